"""The JSON bodies the backend and the agent exchange, with their parsers and builders.

Both sides import this module, so a field renamed here is renamed for both; the parsers are strict (every
field typed, every length checked) and say which field is wrong, because a backend must answer a bad
upload with a clear 400 and leave its store untouched. Binary values travel as standard base64.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.clock import date_to_day, day_to_iso
from agent.schemes import dp3t, ebid, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey

KEY_SCHEMES = (SchemeName.DP3T, SchemeName.GAEN)
KEY_LEN = {SchemeName.DP3T: dp3t.SK_LEN, SchemeName.GAEN: gaen.TEK_LEN}
MAX_TRANSMISSION_RISK = 8


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


def _obj(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{field}: expected a JSON object")
    return value


def _int(obj: Mapping[str, Any], name: str, field: str, lo: int, hi: int, default: int | None = None) -> int:
    value = obj.get(name, default)
    if type(value) is not int:
        raise WireError(f"{field}.{name}: expected an integer")
    if not lo <= value <= hi:
        raise WireError(f"{field}.{name}: must be between {lo} and {hi}, got {value}")
    return value


def _num(obj: Mapping[str, Any], name: str, field: str) -> float:
    value = obj.get(name)
    if type(value) not in (int, float) or not math.isfinite(value):
        raise WireError(f"{field}.{name}: expected a number")
    return float(value)


def _list(obj: Mapping[str, Any], name: str, field: str) -> list[Any]:
    value = obj.get(name)
    if not isinstance(value, list):
        raise WireError(f"{field}.{name}: expected a list")
    return value


def day_of_date(value: object, field: str) -> int | None:
    """A YYYY-MM-DD (or null) as a UTC day number."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise WireError(f"{field}: expected a date YYYY-MM-DD")
    try:
        date = dt.date.fromisoformat(value)
    except ValueError:
        raise WireError(f"{field}: expected a date YYYY-MM-DD, got {value!r}") from None
    return date_to_day(date)


def date_of_day(day: int | None) -> str | None:
    return None if day is None else day_to_iso(day)


# ---- key uploads (DP-3T and GAEN) --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyUpload:
    """The real keys of an upload (fake ones already dropped) and the onset the device claims."""

    keys: tuple[PublishedKey, ...]
    onset_day: int | None


def parse_key_upload(body: object, scheme: SchemeName, expected: int) -> KeyUpload:
    """``{"keys": [{keyData, rollingStartNumber, rollingPeriod, transmissionRiskLevel, fake}], "onset"}``
    with exactly ``expected`` entries (real + fake)."""
    obj = _obj(body, "body")
    entries = _list(obj, "keys", "body")
    if len(entries) > expected:
        raise WireError(f"body.keys: too many keys ({len(entries)}, the maximum is {expected})")
    if len(entries) < expected:
        raise WireError(f"body.keys: expected exactly {expected} keys (pad with fake keys), got {len(entries)}")
    real: list[PublishedKey] = []
    seen: set[bytes] = set()
    for i, entry in enumerate(entries):
        field = f"body.keys[{i}]"
        e = _obj(entry, field)
        data = unb64(e.get("keyData"), f"{field}.keyData", KEY_LEN[scheme])
        start = _int(e, "rollingStartNumber", field, 0, 2**31 - 1 - gaen.ROLLING_PERIOD)
        period = _int(e, "rollingPeriod", field, 1, 144, default=144)
        risk = _int(e, "transmissionRiskLevel", field, 0, MAX_TRANSMISSION_RISK, default=0)
        fake = _int(e, "fake", field, 0, 1, default=0)
        if scheme is SchemeName.DP3T and (start % gaen.ROLLING_PERIOD or period != gaen.ROLLING_PERIOD):
            raise WireError(f"{field}: a DP-3T key starts a day (rollingStartNumber = day * 144, period 144)")
        if fake:
            continue
        if data in seen:
            raise WireError(f"{field}.keyData: the same key appears twice")
        seen.add(data)
        real.append(PublishedKey(data, start, period, transmission_risk_level=risk))
    return KeyUpload(tuple(real), day_of_date(obj.get("onset"), "body.onset"))


def key_upload_body(
    scheme: SchemeName,
    keys: Sequence[PublishedKey],
    count: int,
    onset_day: int | None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> dict[str, Any]:
    """The upload body: the real keys, then fake keys that look alike (random data, a plausible day), in
    a random order, ``count`` in all."""
    if len(keys) > count:
        raise ValueError(f"{len(keys)} keys do not fit an upload of {count}")
    starts = [k.rolling_start_interval_number for k in keys] or [0]
    entries = [_key_entry(k, fake=False) for k in keys]
    for i in range(count - len(keys)):
        start = starts[i % len(starts)] - gaen.ROLLING_PERIOD * (1 + i // len(starts))
        fake = PublishedKey(random_bytes(KEY_LEN[scheme]), max(0, start))
        entries.append(_key_entry(fake, fake=True))
    order = sorted(range(len(entries)), key=lambda _: random_bytes(4))
    return {"keys": [entries[i] for i in order], "onset": date_of_day(onset_day)}


def _key_entry(key: PublishedKey, fake: bool) -> dict[str, Any]:
    return {
        "keyData": b64(key.key_data),
        "rollingStartNumber": key.rolling_start_interval_number,
        "rollingPeriod": key.rolling_period,
        "transmissionRiskLevel": key.transmission_risk_level,
        "fake": int(fake),
    }


# ---- EBID batches and reports ------------------------------------------------------------------------


def ebid_batch_body(batch: ebid.EbidBatch) -> dict[str, Any]:
    return {
        "periodSeconds": batch.period_seconds,
        "entries": [{"period": e.period, "ebid": b64(e.ebid), "ecc": e.ecc} for e in batch.entries],
    }


def parse_ebid_batch(body: object) -> ebid.EbidBatch:
    obj = _obj(body, "body")
    period_seconds = _int(obj, "periodSeconds", "body", 1, 86_400)
    entries = []
    for i, entry in enumerate(_list(obj, "entries", "body")):
        field = f"body.entries[{i}]"
        e = _obj(entry, field)
        entries.append(
            ebid.EbidEntry(
                period=_int(e, "period", field, 0, 2**40),
                ebid=unb64(e.get("ebid"), f"{field}.ebid", ebid.EBID_LEN),
                ecc=_int(e, "ecc", field, 0, 255),
            )
        )
    return ebid.EbidBatch(period_seconds, tuple(entries))


@dataclass(frozen=True)
class ScanRecord:
    """One scan window in which a contact's EBID was heard, reduced to what risk scoring needs: when it
    was first heard in that window and its typical (mean) and minimum attenuation in dB."""

    time: float
    typical_attenuation: int
    min_attenuation: int


@dataclass(frozen=True)
class ReportedContact:
    """An EBID the reporting device received: ECC ‖ EBID, the period it claims, when it was first heard.
    ``ecc`` None: the device did not keep the ECC; the backend then takes the EBID for one of its own."""

    ecc: int | None
    ebid: bytes
    period: int
    time: float
    scans: tuple[ScanRecord, ...]


def scans_body(scans: Sequence[ScanRecord]) -> list[dict[str, Any]]:
    return [
        {
            "time": s.time,
            "typicalAttenuation": s.typical_attenuation,
            "minAttenuation": s.min_attenuation,
        }
        for s in scans
    ]


def parse_scans(value: object, field: str) -> tuple[ScanRecord, ...]:
    if not isinstance(value, list) or not value:
        raise WireError(f"{field}: expected a non-empty list")
    scans = []
    for j, scan in enumerate(value):
        sf = f"{field}[{j}]"
        s = _obj(scan, sf)
        scans.append(
            ScanRecord(
                time=_num(s, "time", sf),
                typical_attenuation=_int(s, "typicalAttenuation", sf, 0, 255),
                min_attenuation=_int(s, "minAttenuation", sf, 0, 255),
            )
        )
    return tuple(scans)


def contact_body(c: ReportedContact) -> dict[str, Any]:
    return {"ecc": c.ecc, "ebid": b64(c.ebid), "period": c.period, "time": c.time, "scans": scans_body(c.scans)}


def parse_contacts(body: object, max_contacts: int) -> tuple[ReportedContact, ...]:
    """``{"contacts": [{ecc, ebid, period, time, scans: [{time, typicalAttenuation, minAttenuation}]}]}``."""
    obj = _obj(body, "body")
    items = _list(obj, "contacts", "body")
    if len(items) > max_contacts:
        raise WireError(f"body.contacts: too many contacts ({len(items)}, the maximum is {max_contacts})")
    out = []
    for i, item in enumerate(items):
        field = f"body.contacts[{i}]"
        e = _obj(item, field)
        out.append(
            ReportedContact(
                ecc=None if e.get("ecc") is None else _int(e, "ecc", field, 0, 255),
                ebid=unb64(e.get("ebid"), f"{field}.ebid", ebid.EBID_LEN),
                period=_int(e, "period", field, 0, 2**40),
                time=_num(e, "time", field),
                scans=parse_scans(e.get("scans"), f"{field}.scans"),
            )
        )
    return tuple(out)


def contacts_body(contacts: Sequence[ReportedContact]) -> dict[str, Any]:
    return {"contacts": [contact_body(c) for c in contacts]}


# ---- small request bodies ----------------------------------------------------------------------------


def required_str(body: object, name: str, max_len: int = 256) -> str:
    obj = _obj(body, "body")
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise WireError(f"body.{name}: expected a non-empty string")
    if len(value) > max_len:
        raise WireError(f"body.{name}: longer than {max_len} characters")
    return value


def optional_bool(body: object, name: str) -> bool:
    value = _obj(body, "body").get(name, False)
    if type(value) is not bool:
        raise WireError(f"body.{name}: expected true or false")
    return value


def required_int(body: object, name: str, lo: int, hi: int) -> int:
    return _int(_obj(body, "body"), name, "body", lo, hi)


def optional_int(body: object, name: str, lo: int, hi: int, default: int) -> int:
    return _int(_obj(body, "body"), name, "body", lo, hi, default=default)
