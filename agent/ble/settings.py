"""What the BLE edge needs to know, as one value: the edge reads no config file itself.

``agent.config.ble_settings`` builds it from the ``[ble]`` table and the calibrated TX power; tests and the
test-bed build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BleSettings:
    """Adapters to use, the advertised TX power and the scan duty cycle and watchdog."""

    advertise_adapter: str | None = "auto"
    scan_adapters: tuple[str, ...] = ("auto",)
    tx_power: int = -8
    include_tx_power: bool = False
    scan_seconds: float = 0.0
    scan_period_seconds: float = 0.0
    passive: bool = False
    watchdog_s: float = 90.0
    call_timeout_s: float = 10.0  # every BlueZ call: a hung bluetoothd must not stall a loop for ever
