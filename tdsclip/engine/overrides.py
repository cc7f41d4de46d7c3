"""``key=value`` command-line overrides for nested config dicts.

``model.side_dim=512`` sets ``cfg["model"]["side_dim"]``; the value is read by the rules of
``tdsclip.config_rules.parse_value`` (the same for every section).
"""
from __future__ import annotations

from tdsclip.config_rules import split_override


def apply_overrides(cfg: dict, items: list[str]) -> dict:
    """Applies ``key.sub=value`` strings to the nested dict ``cfg`` in place (validity of the keys is
    checked afterwards, when the dict is turned into the typed config)."""
    for item in items:
        path, value = split_override(item)
        node = cfg
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ValueError(f"override {item!r}: {part!r} is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return cfg


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, recursively for nested dicts (a new dict; inputs unchanged)."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out
