"""``key=value`` command-line overrides for nested config dicts.

``model.side_dim=512`` sets ``cfg["model"]["side_dim"]``; values are parsed as YAML
(``true``, ``null``, ``[0.9, 0.999]``, ``8``), plus floats written without a dot (``1e-4``),
which YAML 1.1 would otherwise read as strings.
"""
from __future__ import annotations

import re

import yaml

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


_WORDS = {"on", "off", "yes", "no", "y", "n"}  # YAML 1.1 booleans that are meant as words here (amp=off)


def parse_value(text: str):
    if _FLOAT.match(text.strip()) and not re.match(r"^[+-]?\d+$", text.strip()):
        return float(text)
    if text.strip().lower() in _WORDS:
        return text.strip()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def split_override(item: str) -> tuple[list[str], object]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value (e.g. model.side_dim=512)")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {item!r} has an empty key")
    return key.split("."), parse_value(value)


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
