"""Strict readers for the fields of a JSON body, and base64 for binary values.

Every reader checks one field's type and range and names the field in its error (``body.keys[3].keyData:
expected 16 bytes, got 15``): a backend must answer a bad upload with a clear 400, and a device must turn
a strange answer into one line, not a traceback. ``agent.protocol.wire`` builds its bodies on these.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any


class WireError(ValueError):
    """A request body that does not follow the format; the message names the field."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: object, field: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise WireError(f"{field}: expected a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{field}: not valid base64") from None
    if length is not None and len(data) != length:
        raise WireError(f"{field}: expected {length} bytes, got {len(data)}")
    return data


def obj_of(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{field}: expected a JSON object")
    return value


def integer(obj: Mapping[str, Any], name: str, field: str, lo: int, hi: int, default: int | None = None) -> int:
    value = obj.get(name, default)
    if type(value) is not int:
        raise WireError(f"{field}.{name}: expected an integer")
    if not lo <= value <= hi:
        raise WireError(f"{field}.{name}: must be between {lo} and {hi}, got {value}")
    return value


def number(obj: Mapping[str, Any], name: str, field: str) -> float:
    value = obj.get(name)
    if type(value) not in (int, float) or not math.isfinite(value):
        raise WireError(f"{field}.{name}: expected a number")
    return float(value)


def string(obj: Mapping[str, Any], name: str, field: str, max_len: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise WireError(f"{field}.{name}: expected a non-empty string")
    if len(value) > max_len:
        raise WireError(f"{field}.{name}: longer than {max_len} characters")
    return value


def boolean(obj: Mapping[str, Any], name: str, field: str, default: bool | None = None) -> bool:
    value = obj.get(name, default)
    if type(value) is not bool:
        raise WireError(f"{field}.{name}: expected true or false")
    return value


def listed(obj: Mapping[str, Any], name: str, field: str) -> list[Any]:
    value = obj.get(name)
    if not isinstance(value, list):
        raise WireError(f"{field}.{name}: expected a list")
    return value
