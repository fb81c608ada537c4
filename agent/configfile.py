"""The one reader of TOML config files, shared by the agent's config and the backend's.

Both are set up once by someone who is not their author and then run for months, so a mistake must stop
the program at start with one line naming the key (``agent.retention_days: expected an integer, got
"ten"``). The file format of each is a tree of frozen dataclasses; ``build`` checks a parsed table against
it, key by key and type by type, so neither side writes its own checker.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A config problem, with the dotted key it is about."""


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a table, or one ConfigError line naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def build(cls: type[_T], raw: object, prefix: str) -> _T:
    """A frozen dataclass from a TOML table, checking every key and type and naming the bad one."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{_key(prefix, unknown[0])}: unknown key (known: {', '.join(sorted(fields))})")
    values = {name: _convert(hints[name], raw[name], _key(prefix, name)) for name in raw}
    return cls(**values)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _convert(hint: Any, value: object, key: str) -> object:
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)  # type: ignore[arg-type]
    origin = get_origin(hint)
    args = get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and (type(value) is not hint):
        names = {int: "an integer", str: "a string", bool: "true or false"}
        raise ConfigError(f"{key}: expected {names[hint]}, got {value!r}")
    if hint is float:
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return value
