"""Collect one known transmitter's RSSI readings for a while: the raw material of ``proxitrace calibrate``.

Calibration listens for a single reference beacon, by address, on one adapter, with BlueZ's duplicate
filter off so every advertisement counts. This is not the agent's scanner (no rotation, no watchdog, no
sink): a one-shot measurement a user runs in front of the beacon. The address is used only to pick out the
reference's reports and is never logged or returned.
"""

from __future__ import annotations

import asyncio

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

# BlueZ reports 127 when the controller gave no RSSI; anything outside this range is not a reading.
_MIN_RSSI, _MAX_RSSI = -127, 20


async def sample_rssi(adapter: str, address: str, seconds: float) -> list[int]:
    """Every RSSI heard from ``address`` on ``adapter`` during ``seconds``, in arrival order."""
    wanted = address.upper()
    samples: list[int] = []

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        if device.address.upper() == wanted and adv.rssi is not None and _MIN_RSSI < adv.rssi < _MAX_RSSI:
            samples.append(adv.rssi)

    async with BleakScanner(seen, bluez={"adapter": adapter, "filters": {"DuplicateData": True}}):
        await asyncio.sleep(seconds)
    return samples
