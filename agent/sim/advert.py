"""What bluetoothd makes of a registered LEAdvertisement1: parsed properties and the bytes that go on air.

Mirrors the checks of BlueZ's ``src/advertising.c`` that matter to an agent: each property must have its
exact D-Bus type (``ServiceData`` is ``a{sv}`` of ``ay``, not ``a{say}``), a broadcast advert may not set
discoverable flags, and the advertising data must fit the legacy 31 bytes minus what the kernel adds for
``Includes`` (3 bytes for tx-power, 4 for appearance). Any failure is BlueZ's ``org.bluez.Error.Failed``
"Failed to parse advertisement."; the returned reason is for the simulator's log only.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbus_fast import Variant

LEGACY_MAX = 31
BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"
AD_FLAGS = 0x01
AD_UUID16_ALL = 0x03
AD_UUID32_ALL = 0x05
AD_UUID128_ALL = 0x07
AD_SERVICE_DATA16 = 0x16
AD_SERVICE_DATA32 = 0x20
AD_SERVICE_DATA128 = 0x21
AD_MANUFACTURER = 0xFF
_UUID_LIST_TYPE = {2: AD_UUID16_ALL, 4: AD_UUID32_ALL, 16: AD_UUID128_ALL}
_SERVICE_DATA_TYPE = {2: AD_SERVICE_DATA16, 4: AD_SERVICE_DATA32, 16: AD_SERVICE_DATA128}


@dataclass(frozen=True)
class Uuid:
    full: str  # 128-bit lowercase, as Device1 reports it
    wire: bytes  # little-endian, 2, 4 or 16 bytes, as in AD structures


@dataclass(frozen=True)
class ParsedAdvert:
    kind: str
    service_uuids: tuple[Uuid, ...]
    service_data: tuple[tuple[Uuid, bytes], ...]
    manufacturer_data: tuple[tuple[int, bytes], ...]
    include_tx_power: bool
    tx_power: int | None  # the TxPower property (BlueZ >= 5.77); None: the adapter's default
    interval_ms: int | None
    payload: bytes


class AdvertError(ValueError):
    pass


def parse_uuid(text: object) -> Uuid:
    """A UUID as bt_string_to_uuid accepts it: 16/32-bit hex (optionally 0x…) or 128-bit."""
    if not isinstance(text, str):
        raise AdvertError("UUID is not a string")
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    try:
        if len(t) in (4, 8):
            value = int(t, 16)
            full = f"{value:08x}{BASE_UUID_SUFFIX}"
            return Uuid(full, value.to_bytes(len(t) // 2, "little"))
        if len(t) == 36 and t.count("-") == 4:
            raw = bytes.fromhex(t.replace("-", ""))
            if t.endswith(BASE_UUID_SUFFIX):
                value = int(t[:8], 16)
                size = 2 if value <= 0xFFFF else 4
                return Uuid(t, value.to_bytes(size, "little"))
            return Uuid(t, raw[::-1])
    except ValueError:
        pass
    raise AdvertError(f"not a UUID: {text!r}")


def _typed(props: dict[str, Variant], name: str, signature: str) -> object:
    v = props.get(name)
    if v is None:
        return None
    if not isinstance(v, Variant) or v.signature != signature:
        got = v.signature if isinstance(v, Variant) else type(v).__name__
        raise AdvertError(f"{name} has signature {got!r}, expected {signature!r}")
    return v.value


def parse_advertisement(props: dict[str, Variant]) -> ParsedAdvert:
    kind = _typed(props, "Type", "s")
    if kind not in ("broadcast", "peripheral"):
        raise AdvertError(f"Type {kind!r} is not broadcast or peripheral")
    uuids = tuple(parse_uuid(u) for u in (_typed(props, "ServiceUUIDs", "as") or []))
    sd_raw = _typed(props, "ServiceData", "a{sv}") or {}
    service_data = []
    for key, value in sd_raw.items():  # type: ignore[union-attr]
        if not isinstance(value, Variant) or value.signature != "ay":
            raise AdvertError("ServiceData values must be 'ay'")
        service_data.append((parse_uuid(key), bytes(value.value)))
    md_raw = _typed(props, "ManufacturerData", "a{qv}") or {}
    manufacturer = []
    for key, value in md_raw.items():  # type: ignore[union-attr]
        if not isinstance(value, Variant) or value.signature != "ay":
            raise AdvertError("ManufacturerData values must be 'ay'")
        manufacturer.append((int(key), bytes(value.value)))
    includes = set(_typed(props, "Includes", "as") or [])  # type: ignore[arg-type]
    _typed(props, "LocalName", "s")  # goes to the scan response, which a broadcast advert never sends
    appearance = _typed(props, "Appearance", "q")
    discoverable = _typed(props, "Discoverable", "b")
    if discoverable and kind == "broadcast":
        raise AdvertError("Broadcast cannot set flags")
    tx = _typed(props, "TxPower", "n")
    if tx is not None and not -127 <= tx <= 20:  # type: ignore[operator]
        raise AdvertError("TxPower out of range")
    lo, hi = _typed(props, "MinInterval", "u"), _typed(props, "MaxInterval", "u")
    for value in (lo, hi):
        if value is not None and not 20 <= value <= 10_485_759:  # type: ignore[operator]
            raise AdvertError("advertising interval out of range")
    if lo is not None and hi is not None and lo > hi:  # type: ignore[operator]
        raise AdvertError("MinInterval greater than MaxInterval")

    payload = bytearray()
    if discoverable:
        payload += bytes([2, AD_FLAGS, 0x02])
    for size, ad_type in _UUID_LIST_TYPE.items():
        group = b"".join(u.wire for u in uuids if len(u.wire) == size)
        if group:
            payload += bytes([1 + len(group), ad_type]) + group
    for uuid, data in service_data:
        payload += bytes([1 + len(uuid.wire) + len(data), _SERVICE_DATA_TYPE[len(uuid.wire)]]) + uuid.wire + data
    for company, data in manufacturer:
        payload += bytes([3 + len(data), AD_MANUFACTURER]) + company.to_bytes(2, "little") + data
    limit = LEGACY_MAX - (3 if "tx-power" in includes else 0)
    limit -= 4 if ("appearance" in includes or appearance is not None) else 0
    if len(payload) > limit:
        raise AdvertError(f"advertising data is {len(payload)} bytes, {limit} fit")
    interval = hi if hi is not None else lo
    return ParsedAdvert(
        kind=str(kind),
        service_uuids=uuids,
        service_data=tuple(service_data),
        manufacturer_data=tuple(manufacturer),
        include_tx_power="tx-power" in includes,
        tx_power=tx,  # type: ignore[arg-type]
        interval_ms=interval,  # type: ignore[arg-type]
        payload=bytes(payload),
    )


def ad_structures(payload: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(payload):
        length = payload[i]
        if length == 0 or i + 1 + length > len(payload):
            break
        out.append((payload[i + 1], payload[i + 2 : i + 1 + length]))
        i += 1 + length
    return out


def matches_or_patterns(payload: bytes, patterns: tuple[tuple[int, int, bytes], ...]) -> bool:
    """AdvertisementMonitor1 ``or_patterns``: any (start, AD type, content) found in an AD structure."""
    structures = ad_structures(payload)
    return any(
        ad_type == want_type and data[start : start + len(content)] == content
        for start, want_type, content in patterns
        for ad_type, data in structures
    )
