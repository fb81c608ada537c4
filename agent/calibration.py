"""Which TX power and RSSI correction this device uses, and how much to trust them.

Risk scoring turns RSSI into attenuation, and dongles differ by 10 dB and more, so each adapter model
needs its own numbers. The order of trust: this device's own measurement (``proxitrace calibrate``),
then the shipped table's measured value for its model, then the documented default. The GAEN v1.1
metadata advertises which of these was used (calibration confidence), so receivers can weigh it.
"""

from __future__ import annotations

import math
import os
import statistics
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agent.ble.sampler import sample_rssi
from agent.paths import ensure_private_dir
from agent.schemes.gaen import CALIBRATION_CONFIDENCE

LOCAL_FILE = "calibration.toml"
FREE_SPACE_LOSS_1M_DB = 41.0  # 2.4 GHz, isotropic antennas
MIN_SAMPLES = 10  # fewer readings than this and the median says more about luck than about the receiver


class CalibrationError(ValueError):
    pass


@dataclass(frozen=True)
class Calibration:
    tx_power: int
    rssi_correction: float
    confidence: int  # GAEN calibration confidence 0..3
    source: str  # "device", "table:<key>", "default"
    model: str = ""
    quirks: str = ""


def load_table(path: Path | None = None) -> dict[str, object]:
    try:
        text = path.read_text() if path else resources.files("agent").joinpath("data/calibration.toml").read_text()
        return tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CalibrationError(f"calibration table {path or 'built-in'}: {exc}") from None


def resolve(table: dict[str, object], model_keys: list[str], local: dict[str, object] | None) -> Calibration:
    """Pick this device's calibration (pure): local measurement > measured table entry > default."""
    default = table.get("default", {})
    if not isinstance(default, dict):
        raise CalibrationError("calibration table: [default] must be a table")
    models = table.get("models", {})
    entry, key = next(((models[k], k) for k in model_keys if isinstance(models, dict) and k in models), ({}, ""))
    name, quirks = str(entry.get("name", "")), str(entry.get("quirks", ""))
    if local and "rssi_correction" in local and "tx_power" in local:
        return Calibration(
            int(local["tx_power"]),
            float(local["rssi_correction"]),
            CALIBRATION_CONFIDENCE["high"],
            "device",
            name,
            quirks,
        )
    if "tx_power" in entry and "rssi_correction" in entry:
        return Calibration(
            int(entry["tx_power"]),
            float(entry["rssi_correction"]),
            CALIBRATION_CONFIDENCE["medium"],
            f"table:{key}",
            name,
            quirks,
        )
    return Calibration(
        int(default.get("tx_power", -8)),
        float(default.get("rssi_correction", 0.0)),
        CALIBRATION_CONFIDENCE["lowest"],
        "default",
        name,
        quirks,
    )


def adapter_model_keys(
    adapter: str, sysfs: Path = Path("/sys/class/bluetooth"), dt_model: Path = Path("/proc/device-tree/model")
) -> list[str]:
    """Table keys for an adapter: its USB vendor:product, else the Pi model for the onboard controller."""
    keys = []
    device = sysfs / adapter / "device"
    for parent in (device, device / ".."):
        try:
            vendor = (parent / "idVendor").read_text().strip()
            product = (parent / "idProduct").read_text().strip()
        except OSError:
            continue
        keys.append(f"usb:{vendor}:{product}")
        break
    try:
        model = dt_model.read_text(errors="replace").rstrip("\0").strip()
    except OSError:
        model = ""
    if model and not keys:
        words = model.split()
        keys.extend(f"pi:{' '.join(words[:n])}" for n in range(len(words), 2, -1))
    return keys


def read_local(state_dir: Path) -> dict[str, object] | None:
    try:
        return tomllib.loads((state_dir / LOCAL_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CalibrationError(f"{state_dir / LOCAL_FILE}: {exc}") from None


def write_local(state_dir: Path, tx_power: int, rssi_correction: float, measured_at: float, samples: int) -> Path:
    path = ensure_private_dir(state_dir) / LOCAL_FILE  # calibrating comes before the agent's first run
    tmp = state_dir / f".{LOCAL_FILE}.tmp"
    text = (
        "# Written by proxitrace calibrate; delete to fall back to the shipped table.\n"
        f"tx_power = {int(tx_power)}\nrssi_correction = {rssi_correction:.1f}\n"
        f"measured_at = {measured_at:.0f}\nsamples = {samples}\n"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


# The measurement behind ``proxitrace calibrate``: a reference beacon of known TX power at a known distance
# should read a predictable RSSI; what this receiver reads instead is its correction.


@dataclass(frozen=True)
class Measurement:
    median_rssi: float
    expected_rssi: float
    samples: int

    @property
    def rssi_correction(self) -> float:
        """What to add to this receiver's readings so that they match a calibrated receiver's."""
        return self.expected_rssi - self.median_rssi


def parse_distance(text: str) -> float:
    """``1m``, ``0.5m`` or ``2`` as metres; anything else is a one-line error."""
    try:
        metres = float(text.lower().removesuffix("m"))
    except ValueError:
        raise CalibrationError(f"{text!r} is not a distance like 1m") from None
    if not metres > 0:
        raise CalibrationError("must be positive")
    return metres


def expected_rssi(reference_tx: float, distance_m: float) -> float:
    """What a calibrated receiver reads from the reference: its TX power less log-distance free-space loss."""
    return reference_tx - FREE_SPACE_LOSS_1M_DB - 20 * math.log10(distance_m)


def measurement_of(samples: Sequence[int], reference_tx: float, distance_m: float, seconds: float) -> Measurement:
    """The median of what was heard against what should have been heard (pure)."""
    if len(samples) < MIN_SAMPLES:
        raise CalibrationError(
            f"heard the reference only {len(samples)} times in {seconds:g} s; move it closer or check the address"
        )
    return Measurement(statistics.median(samples), expected_rssi(reference_tx, distance_m), len(samples))


async def measure(adapter: str, address: str, seconds: float, reference_tx: float, distance_m: float) -> Measurement:
    """Listen to the reference on ``adapter`` for ``seconds`` and compare its median RSSI with the expected one."""
    return measurement_of(await sample_rssi(adapter, address, seconds), reference_tx, distance_m, seconds)


def record(state_dir: Path, measurement: Measurement, tx_power: int | None, adapter: str, now: float) -> Path:
    """Write the correction, with this device's own TX power: the one given, else the one it uses today."""
    own_tx = (
        tx_power
        if tx_power is not None
        else resolve(load_table(), adapter_model_keys(adapter), read_local(state_dir)).tx_power
    )
    return write_local(state_dir, own_tx, measurement.rssi_correction, now, measurement.samples)
