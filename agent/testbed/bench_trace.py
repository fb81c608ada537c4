"""A real bench run as a trace: each host's ``btmon -w`` capture plus the positions sheet.

Who sent what: BLE addresses and IDs rotate together, so neither names a dongle. But each host's capture
also holds the HCI commands its own agent gave its controller (LE Set Advertising Data and its extended
form), i.e. every payload that dongle put on air, rotation after rotation. The captures are therefore
their own identity map: an ID heard in capture B and broadcast in capture A was sent by A. No key leaves a
device, nothing needs a clock common to the agents, and it works for every scheme (EBID included). An ID no
capture broadcast (a phone passing by, a host without a capture) is counted and left out.

The positions sheet (CSV: ``device,x,y[,z],from,until[,model]``, metres; ``from``/``until`` unix seconds
or ISO 8601, empty = open) gives each device's place over time, hence the ground-truth distance of each
row, and one ground-truth row per minute per pair where both places are known (so a close contact
nobody heard still counts as a contact).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.schemes.base import DecodedAdvert
from agent.schemes.decoder import decode_advertising_data
from agent.testbed.capture import TraceError as CaptureError
from agent.testbed.capture import controllers, reports
from agent.testbed.trace import ScanBehaviour, Trace, TraceError, TraceRow

TRUTH_STEP_SECONDS = 60.0
SHEET_COLUMNS = ("device", "x", "y", "z", "from", "until", "model")


@dataclass(frozen=True)
class Placement:
    device: str
    x: float
    y: float
    z: float
    start: float
    end: float
    model: str


@dataclass(frozen=True)
class BenchTrace:
    trace: Trace
    unknown_adverts: int  # heard, ours by format, but broadcast by no capture's own controller


def _when(text: str, default: float, line: int, name: str) -> float:
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TraceError(f"positions line {line}: {name} {text[:30]!r} is neither unix seconds nor ISO 8601") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_positions(text: str) -> tuple[Placement, ...]:
    """The sheet's placements, or TraceError naming the line at fault."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if header[:3] != ["device", "x", "y"] or set(header) - set(SHEET_COLUMNS):
        raise TraceError(
            f"positions line 1: expected the header {','.join(SHEET_COLUMNS)} (z, from, until, model optional)"
        )
    at = {name: i for i, name in enumerate(header)}
    out = []
    for n, cells in enumerate(reader, start=2):
        if not cells or not "".join(cells).strip():
            continue
        if len(cells) != len(header):
            raise TraceError(f"positions line {n}: {len(cells)} fields, the header has {len(header)}")

        def cell(name: str, cells: list[str] = cells) -> str:
            return cells[at[name]].strip() if name in at else ""

        try:
            x, y, z = float(cell("x")), float(cell("y")), float(cell("z") or 0)
        except ValueError:
            raise TraceError(f"positions line {n}: x, y and z must be numbers (metres)") from None
        if not cell("device"):
            raise TraceError(f"positions line {n}: device must not be empty")
        start, end = _when(cell("from"), -math.inf, n, "from"), _when(cell("until"), math.inf, n, "until")
        if end <= start:
            raise TraceError(f"positions line {n}: until must be after from")
        out.append(Placement(cell("device"), x, y, z, start, end, cell("model")))
    if not out:
        raise TraceError("positions: the sheet places no device")
    return tuple(out)


def _place(placements: Sequence[Placement], device: str, t: float) -> Placement | None:
    return next((p for p in placements if p.device == device and p.start <= t < p.end), None)


def _distance(placements: Sequence[Placement], a: str, b: str, t: float) -> float | None:
    pa, pb = _place(placements, a, t), _place(placements, b, t)
    if pa is None or pb is None:
        return None
    return math.dist((pa.x, pa.y, pa.z), (pb.x, pb.y, pb.z))


def trace_from_captures(captures: dict[str, Path], placements: Sequence[Placement]) -> BenchTrace:
    """One trace from the receivers' captures (name -> capture file) and the positions sheet."""
    sender_of: dict[bytes, str] = {}
    for name, path in captures.items():
        for controller in controllers(path).values():
            for _t, _address, payload in controller.on_air:
                decoded = decode_advertising_data(payload)
                if isinstance(decoded, DecodedAdvert):
                    sender_of[decoded.ephemeral_id] = name
    models = {p.device: p.model for p in placements}
    rows: list[TraceRow] = []
    unknown = 0
    for name, path in captures.items():
        for r in reports(path):
            decoded = decode_advertising_data(r.data)
            if not isinstance(decoded, DecodedAdvert):
                continue
            sender = sender_of.get(decoded.ephemeral_id)
            if sender is None or sender == name:
                unknown += sender is None
                continue
            tx_power = r.tx_power if r.tx_power is not None else decoded.tx_power
            rows.append(
                TraceRow(
                    r.time,
                    name,
                    sender,
                    r.rssi,
                    tx_power,
                    models.get(name, ""),
                    models.get(sender, ""),
                    _distance(placements, name, sender, r.time),
                )
            )
    if not rows:
        raise TraceError("the captures hold no advert one of the other captures broadcast")
    rows.extend(_truth_rows(rows, sorted(captures), placements))
    rows.sort(key=lambda r: r.time)
    return BenchTrace(Trace(ScanBehaviour(), tuple(rows)), unknown)


def _truth_rows(heard: list[TraceRow], devices: list[str], placements: Sequence[Placement]) -> list[TraceRow]:
    """A distance-only row per minute per pair over the captures' span, wherever both places are known."""
    first, last = min(r.time for r in heard), max(r.time for r in heard)
    out = []
    steps = int((last - first) // TRUTH_STEP_SECONDS) + 1
    for i, a in enumerate(devices):
        for b in devices[i + 1 :]:
            for k in range(steps):
                t = first + k * TRUTH_STEP_SECONDS
                d = _distance(placements, a, b, t)
                if d is not None:
                    out.append(TraceRow(t, a, b, None, distance_m=d))
    return out


def read_captures(captures: dict[str, Path], positions: Path) -> BenchTrace:
    """The files read and turned into a trace; every failure is a TraceError of one line."""
    try:
        placements = parse_positions(positions.read_text())
    except OSError as exc:
        raise TraceError(f"{positions}: {exc.strerror}") from None
    try:
        return trace_from_captures(captures, placements)
    except CaptureError as exc:
        raise TraceError(str(exc)) from None
    except OSError as exc:
        raise TraceError(f"{exc.filename}: {exc.strerror}") from None
