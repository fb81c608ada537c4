"""Types shared by the three ID schemes: what the advertiser broadcasts and what the scanner decodes.

Every scheme reduces to the same shape on air (a 16-bit service UUID with 20 bytes of service data that
carry a 16-byte ephemeral ID), so the BLE edge, the store and the matcher handle them through these types
and never branch on scheme internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

SERVICE_DATA_LEN = 20
LEGACY_ADV_MAX = 31
BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


class SchemeName(StrEnum):
    DP3T = "dp3t"
    GAEN = "gaen"
    EBID = "ebid"


# The one home of each scheme's 16-bit service UUID: the advert (Broadcast.service_uuid16), the decoder and the
# scanner's filter all read it here.
SERVICE_UUID16: dict[SchemeName, int] = {
    SchemeName.DP3T: 0xFD68,  # Ubique, used by the DP-3T prototype SDK
    SchemeName.GAEN: 0xFD6F,  # Apple/Google Exposure Notification
    SchemeName.EBID: 0xFD64,  # INRIA, used by StopCovid/ROBERT
}
SCHEME_BY_UUID16: dict[int, SchemeName] = {v: k for k, v in SERVICE_UUID16.items()}


def uuid128(uuid16: int) -> str:
    """The 128-bit lowercase form BlueZ uses in UUIDs and ServiceData keys."""
    return f"0000{uuid16:04x}{BASE_UUID_SUFFIX}"


def uuid16_of(uuid: str | int) -> int | None:
    """The 16-bit UUID of a Bluetooth-base UUID given as int, '0xfd6f', 'fd6f' or 128-bit string."""
    if isinstance(uuid, int):
        return uuid if 0 <= uuid <= 0xFFFF else None
    text = uuid.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) == 36 and text.endswith(BASE_UUID_SUFFIX) and text.startswith("0000"):
        text = text[4:8]
    if len(text) != 4:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


@dataclass(frozen=True)
class Broadcast:
    """One ephemeral ID as it goes on air, with the time window in which it is valid (unix seconds)."""

    scheme: SchemeName
    ephemeral_id: bytes
    service_data: bytes
    valid_from: float
    valid_until: float

    @property
    def service_uuid16(self) -> int:
        return SERVICE_UUID16[self.scheme]


@dataclass(frozen=True)
class DecodedAdvert:
    """Service data of one of our UUIDs, parsed. Metadata stays as received (encrypted for DP-3T/GAEN)."""

    scheme: SchemeName
    ephemeral_id: bytes
    metadata: bytes
    tx_power: int | None = None
    ecc: int | None = None
    version: int | None = None


@dataclass(frozen=True)
class Rejected:
    """Why some service data is not a sighting; never carries the payload itself."""

    reason: str


class Scheme(Protocol):
    """What the advertiser needs from a scheme: the broadcast that is live at a given time.

    A scheme object holds the key material it was built with and is immutable; ``broadcast_at`` returns
    None when that material does not cover the time asked (a new day key or EBID batch is needed).
    """

    name: ClassVar[SchemeName]

    def broadcast_at(self, t: float, tx_power: int) -> Broadcast | None: ...


def advertising_data(uuid16: int, service_data: bytes) -> bytes:
    """The legacy advertising payload: Flags, Complete 16-bit UUID list, Service Data (31 bytes for ours)."""
    uuid_le = uuid16.to_bytes(2, "little")
    flags = bytes([0x02, 0x01, 0x1A])
    uuids = bytes([0x03, 0x03]) + uuid_le
    sd = bytes([len(service_data) + 3, 0x16]) + uuid_le + service_data
    out = flags + uuids + sd
    if len(out) > LEGACY_ADV_MAX:
        raise ValueError(f"advertising data is {len(out)} bytes, over the legacy limit of 31")
    return out
