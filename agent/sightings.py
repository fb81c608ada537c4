"""What the scanner hears and what the store keeps of it.

A raw sighting is one advert callback; a sighting window is the store's aggregate of all callbacks for one
(scheme, ID) inside one scan window. Matching and risk work on windows only, which is why the store can
fold hundreds of callbacks a second into a few rows without losing what risk scoring needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.schemes.base import SchemeName

SCAN_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RawSighting:
    """One advert as decoded by the scanner. No address: the store must never see one."""

    scheme: SchemeName
    ephemeral_id: bytes
    time: float
    rssi: int
    tx_power: int | None
    metadata: bytes
    adapter: str


@dataclass(frozen=True)
class SightingWindow:
    """All sightings of one ID in one scan window (window_start is a multiple of the window length)."""

    scheme: SchemeName
    ephemeral_id: bytes
    window_start: int
    count: int
    rssi_min: int
    rssi_max: int
    rssi_sum: int
    tx_power: int | None
    metadata: bytes
    first_seen: float
    last_seen: float

    @property
    def rssi_mean(self) -> float:
        return self.rssi_sum / self.count
