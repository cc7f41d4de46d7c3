"""The rules every config value follows, in every section (``model`` of any architecture, ``data``,
``optim``, ``runtime``, ``eval``), whether it comes from a YAML file, a ``key=value`` override or Python:

* **command-line values** (:func:`parse_value`) are read as YAML scalars (``8``, ``0.5``, ``true``,
  ``null``, ``[0.9, 0.999]``), plus ``1e-4``-style floats (YAML 1.1 reads them as strings); the words
  ``on off yes no`` stay words (``runtime.amp=off``) and become booleans only in a boolean field;
* **conversion to the field's type** (:func:`coerce`): a boolean field takes ``true/false``,
  ``yes/no``, ``on/off`` and ``1/0`` (also as text); an integer field an integer, a float with no
  fraction or a text holding one (``"8"``); a float field any finite number or a text holding one; a
  text field text or a number (and YAML's ``off`` read as a boolean gives back ``"off"``; an empty
  value ``""``); ``null``/``none``/``~`` is allowed only where the field is optional. A value that
  does not fit is a ``ValueError`` naming the key (``optim.epochs: expected an integer, got 2.5``);
* **unknown keys** (:func:`check_known`) are a ``ValueError`` that suggests the nearest known key;
* **malformed YAML** (:func:`load_yaml`) is a ``ValueError`` naming the file, line and column;
* **value checks** shared by every config's ``validate()`` (:func:`check_int`,
  :func:`check_optional_positive_int`): a ``TypeError`` for the wrong type, a ``ValueError`` for a
  value out of range, both naming the field.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing

import yaml

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INT = re.compile(r"^[+-]?\d+$")
_WORDS = {"on", "off", "yes", "no"}  # YAML 1.1 booleans meant as words on a command line (amp=off)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NULL = {"null", "none", "~"}


# ---------------------------------------------------------------------------------------------
# reading

def parse_value(text: str):
    """The value of a command-line ``key=value``'s text."""
    stripped = text.strip()
    if _FLOAT.match(stripped) and not _INT.match(stripped):
        return float(stripped)
    if stripped.lower() in _WORDS:
        return stripped
    try:
        return yaml.safe_load(stripped) if stripped else ""
    except yaml.YAMLError:
        return text


def split_override(item) -> tuple[list[str], object]:
    """``"optim.lr=5e-4"`` → ``(["optim", "lr"], 0.0005)``; a ValueError for anything not key=value."""
    if not isinstance(item, str) or "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value (e.g. model.side_dim=512)")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {item!r} has an empty key")
    return key.split("."), parse_value(value)


def load_yaml(path: str) -> dict:
    """The mapping a YAML file holds (empty file: ``{}``); malformed YAML or another top-level value is
    a ValueError naming the file and, for a syntax error, the line and column."""
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"{path}{where}: not valid YAML: {what}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw


# ---------------------------------------------------------------------------------------------
# keys

def qualified(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def check_known(key, names, section: str = "") -> None:
    """ValueError for a key that is not among ``names``, with the nearest known key as a hint."""
    names = list(names)
    if key in names:
        return
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" (did you mean {qualified(section, close[0])!r}?)" if close else ""
    of = f" of {section}" if section else ""
    raise ValueError(f"unknown config key {qualified(section, str(key))!r}{hint}; "
                     f"known keys{of}: {', '.join(sorted(names))}")


# ---------------------------------------------------------------------------------------------
# values

def _optional_inner(tp):
    """``X`` for ``Optional[X]`` / ``X | None``, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def coerce(value, tp, where: str):
    """``value`` converted to the field type ``tp`` by the rules above; ValueError naming ``where``."""
    inner = _optional_inner(tp)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULL):
            return None
        return coerce(value, inner, where)
    if value is None:
        if tp is str:
            return ""
        raise ValueError(f"{where}: cannot be null")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            word = str(value).strip().lower()
            if word in _TRUE | _FALSE:
                return word in _TRUE
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT.match(value.strip()):
            return int(value.strip())
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare off / on as a boolean (amp: off)
            return "on" if value else "off"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ValueError(f"{where}: expected a text value, got {value!r}")
    if tp is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ValueError(f"{where}: expected a list, got {value!r}")
    if tp is dict:
        if isinstance(value, dict):
            return value
        raise ValueError(f"{where}: expected a mapping, got {value!r}")
    return value


def field_types(cls) -> dict:
    """{field name: type} of a config dataclass (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_fields(cls, values, section: str = "") -> dict:
    """The keyword arguments for ``cls(**kwargs)`` from a mapping: every key known, every value
    converted (validation of the values themselves is the dataclass's job)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"config section {section or cls.__name__!r} must be a mapping of keys, "
                         f"got {type(values).__name__}")
    types_ = field_types(cls)
    kwargs = {}
    for key, value in values.items():
        check_known(key, types_, section)
        kwargs[key] = coerce(value, types_[key], qualified(section, key))
    return kwargs


# ---------------------------------------------------------------------------------------------
# value checks of validate()

def check_int(value, name: str) -> None:
    """TypeError unless ``value`` is an integer (a boolean is not)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")


def check_optional_positive_int(value, name: str) -> None:
    """``None`` (a default derived elsewhere, e.g. a width from the backbone's) or an integer >= 1."""
    if value is None:
        return
    check_int(value, name)
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (or null), got {value}")
