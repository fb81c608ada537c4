"""Turns bytes heard on air into a typed advert, or says why not.

Everything here faces hostile input (any nearby device can send anything), so nothing raises: every path
ends in a DecodedAdvert or a Rejected with a short reason that never echoes the payload.
"""

from __future__ import annotations

from agent.schemes.base import (
    SCHEME_BY_UUID16,
    SERVICE_DATA_LEN,
    DecodedAdvert,
    Rejected,
    SchemeName,
    uuid16_of,
)
from agent.schemes.ebid import ADVERT_VERSION as EBID_VERSION

AD_SERVICE_DATA_16 = 0x16


def decode_service_data(uuid: str | int, data: bytes) -> DecodedAdvert | Rejected:
    """Service data under ``uuid`` (16-bit int or BlueZ's 128-bit string) → advert or reason."""
    try:
        uuid16 = uuid16_of(uuid)
    except (AttributeError, TypeError):
        return Rejected("UUID is not a string or an integer")
    scheme = SCHEME_BY_UUID16.get(uuid16) if uuid16 is not None else None
    if scheme is None:
        return Rejected("not a contact-tracing service UUID")
    if not isinstance(data, bytes | bytearray | memoryview):
        return Rejected("service data is not bytes")
    data = bytes(data)
    if len(data) != SERVICE_DATA_LEN:
        return Rejected(f"{scheme} service data is {len(data)} bytes, expected {SERVICE_DATA_LEN}")
    if scheme is SchemeName.EBID:
        version = data[17]
        if version != EBID_VERSION:
            return Rejected(f"unknown EBID advert version {version}")
        return DecodedAdvert(
            scheme=scheme,
            ephemeral_id=data[1:17],
            metadata=data[:1],  # the ECC byte: kept so reports can be routed by country
            tx_power=None,  # not on air: it would link the device's EBIDs (agent.schemes.ebid)
            ecc=data[0],
            version=version,
        )
    return DecodedAdvert(scheme=scheme, ephemeral_id=data[:16], metadata=data[16:20])


def decode_advertising_data(payload: bytes) -> DecodedAdvert | Rejected:
    """A whole legacy advertising payload (AD structures) → the first contact-tracing service data in it.

    The whole payload is checked before anything in it is believed: a valid structure followed by bytes that
    are not AD structures is a malformed advert (a fuzzer, a broken stack), not a sighting. After a zero
    length byte only zero padding may follow (Core Spec Vol 3 Part C 11: the non-significant part)."""
    structures: list[tuple[int, bytes]] = []
    i = 0
    while i < len(payload):
        length = payload[i]
        if length == 0:
            if any(payload[i:]):
                return Rejected(f"non-zero bytes after the end of the AD structures at offset {i}")
            break
        if i + 1 + length > len(payload):
            return Rejected(f"AD structure at offset {i} runs past the end of the payload")
        structures.append((payload[i + 1], payload[i + 2 : i + 1 + length]))
        i += 1 + length
    found_any = False
    for ad_type, body in structures:
        if ad_type == AD_SERVICE_DATA_16 and len(body) >= 2:
            found_any = True
            uuid16 = int.from_bytes(body[:2], "little")
            if uuid16 in SCHEME_BY_UUID16:
                return decode_service_data(uuid16, body[2:])
    if found_any:
        return Rejected("service data present, but not under a contact-tracing UUID")
    return Rejected("no 16-bit service data in the payload")
