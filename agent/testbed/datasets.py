"""Published BLE measurements turned into traces, so replay and the channel fit read them like any other.

Two public formats (see hw/README.md for their sources and licences):

- **two people, two phones, six carriages** (Ng, Spachos, Plataniotis 2021): ``RSS_human<XY>.csv`` with
  ``device,elapsed,rss,mRSS10,mRSS100,dist,label``; ``XY`` is the carriage pair (H hand, P pocket, B
  backpack), ``device`` the receiving phone (the other phone in the file is the sender), ``dist`` in cm;
- **a robot moving a phone** (Herald, "rssi-raw-edison"): ``<run>-A.csv`` / ``<run>-B.csv`` with
  ``time,rssi,distance``: A's view of B and B's of A, local time to the second, distance in cm.

Device names carry the carriage (``HP/gryphonelab``) so every file's pair is its own pair in the trace.
The two-people files name each phone, so its rows carry it as a model (``phone:HTC One M9``) that
``testbed fit-calibration`` fits; the Herald files name none.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.testbed.trace import ScanBehaviour, Trace, TraceError, TraceRow

# The two-people files count seconds from an arbitrary origin; they are placed on this day (UTC).
TWO_PEOPLE_EPOCH = datetime(2021, 1, 4, tzinfo=UTC).timestamp()
CARRIAGES = {"H": "hand", "P": "pocket", "B": "backpack"}


@dataclass(frozen=True)
class Measurement:
    """One received advert of a published data set, as the channel fit needs it."""

    source: str  # file stem
    receiver: str
    transmitter: str
    carriage: str  # e.g. "HP": the two carriages, unordered
    t: float
    distance_m: float
    rssi: int
    receiver_model: str = ""  # "phone:<name>", where the data set names the phone
    transmitter_model: str = ""


def _open_rows(path: Path) -> Iterable[dict[str, str]]:
    try:
        with path.open(newline="") as f:
            yield from csv.DictReader(f)
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from None


def read_two_people(path: Path) -> list[Measurement]:
    found = re.fullmatch(r"RSS_human([HPB]{2})", path.stem)
    if not found:
        raise TraceError(f"{path.name}: expected a file named RSS_human<XY>.csv (XY from H, P, B)")
    carriage = found[1]
    rows = list(_open_rows(path))
    devices = sorted({r["device"] for r in rows})
    if len(devices) != 2:
        raise TraceError(f"{path.name}: expected two phones, found {len(devices)}")
    out = []
    for n, r in enumerate(rows, start=2):
        try:
            rx = r["device"]
            tx = devices[1] if rx == devices[0] else devices[0]
            out.append(
                Measurement(
                    path.stem,
                    f"{carriage}/{rx}",
                    f"{carriage}/{tx}",
                    carriage,
                    TWO_PEOPLE_EPOCH + float(r["elapsed"]),
                    float(r["dist"]) / 100,
                    round(float(r["rss"])),
                    f"phone:{rx}",
                    f"phone:{tx}",
                )
            )
        except (KeyError, ValueError):
            raise TraceError(f"{path.name}: line {n}: expected device,elapsed,rss,…,dist") from None
    return out


def read_herald(path: Path) -> list[Measurement]:
    found = re.fullmatch(r"(.+)-([AB])", path.stem)
    if not found:
        raise TraceError(f"{path.name}: expected a file named <run>-A.csv or <run>-B.csv")
    run, me = found[1], found[2]
    other = "B" if me == "A" else "A"
    out = []
    for n, r in enumerate(_open_rows(path), start=2):
        try:
            t = datetime.fromisoformat(r["time"]).replace(tzinfo=UTC).timestamp()
            out.append(
                Measurement(
                    path.stem,
                    f"{run}/{me}",
                    f"{run}/{other}",
                    "robot",
                    t,
                    float(r["distance"]) / 100,
                    round(float(r["rssi"])),
                )
            )
        except (KeyError, ValueError):
            raise TraceError(f"{path.name}: line {n}: expected time,rssi,distance") from None
    return out


def read_measurements(path: Path) -> list[Measurement]:
    """Either format, told apart by the file name."""
    if path.stem.startswith("RSS_human"):
        return read_two_people(path)
    return read_herald(path)


def measurements_to_trace(measurements: Iterable[Measurement]) -> Trace:
    """Continuous scanning (both data sets logged every advert they got), distances on every row."""
    rows = sorted(
        (
            TraceRow(m.t, m.receiver, m.transmitter, m.rssi, None, m.receiver_model, m.transmitter_model, m.distance_m)
            for m in measurements
        ),
        key=lambda r: r.time,
    )
    return Trace(ScanBehaviour(), tuple(rows))
