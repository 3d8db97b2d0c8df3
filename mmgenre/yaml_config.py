"""YAML mappings into validated dataclasses: safe reading, dotted ``--set`` overrides and a
config file's ``quick`` block, type checks that name the key. The one parser of experiment
configs (``mmgenre.config``) and search configs (``mmgenre.tuning.search``).

This module does not import TensorFlow, so the CLI answers ``--help`` fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used, with the reason."""


def _suggest(key, valid):
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value, hint, where):
    """Checks ``value`` against a dataclass field type, converting lists to tuples."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls, raw: dict, where: str = ""):
    """Builds dataclass ``cls`` from a mapping, rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(
                f"unknown config key {path!r}{_suggest(key, names)}; valid keys here: {names}"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, {} if value is None else value, path)
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def parse_override(assignment: str) -> tuple:
    """``section.key=value`` -> (dotted key, value parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    dotted, text = assignment.split("=", 1)
    return dotted.strip(), parse_value(text, f"--set {assignment}")


def overrides_of(raw: dict, where: str, overrides=(), quick: bool = False) -> list:
    """[(dotted key, value)] to apply to ``raw`` (a config or search-config mapping, whose
    ``quick`` block it pops): the quick block's when ``quick``, then each ``--set``. The one
    override parser of experiment and search configs."""
    quick_block = raw.pop("quick", None) or {}
    if not isinstance(quick_block, dict):
        raise ConfigError(f"{where}: quick must be a mapping of dotted overrides")
    if quick and not quick_block:
        raise ConfigError(f"{where} has no 'quick' block for a smoke run")
    return [*(quick_block.items() if quick else ()), *map(parse_override, overrides)]


def parse_value(text: str, where: str):
    """A command-line value as YAML (numbers, lists, booleans), safely; errors name ``where``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise ConfigError(f"{where}: not a valid YAML value ({problem})") from None


def set_dotted(raw: dict, dotted: str, value: Any, sections=()) -> dict:
    """Sets ``raw[a][b] = value`` for "a.b"; refuses a key of ``sections`` alone (it would
    replace a whole section)."""
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"cannot set {dotted!r}: empty key")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted!r}: {part!r} is not a section")
    if len(parts) == 1 and parts[0] in sections:
        # "--set data=0" would silently replace a whole section.
        raise ConfigError(f"cannot set {dotted!r}: it is a section; set one of its keys "
                          f"({dotted}.KEY=VALUE)")
    node[parts[-1]] = value
    return raw


def read_yaml_mapping(path: str) -> dict:
    """A YAML file that must hold a mapping (configs, search configs), read safely."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got a "
                          f"{type(raw).__name__}")
    return raw
