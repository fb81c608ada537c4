"""The trace format: what receivers heard, row by row, with the ground truth next to it.

A trace is the common ground between the simulated test-bed (``testbed sim --trace``), a real bench capture
and published measurements: once in this form, ``testbed replay`` scores any of them the same way. It is a
CSV file (documented in hw/README.md) whose first line names the format and version and may declare how the
receivers scanned::

    # proxitrace-trace v1 scan=continuous
    # proxitrace-trace v1 scan=duty-cycle period=300

followed by a header row and one row per received advert::

    time,receiver,transmitter,rssi,tx_power,receiver_model,transmitter_model,distance_m

``time`` is unix seconds (float); ``rssi`` dBm, empty for a ground-truth-only row (a known distance with
nothing heard, e.g. a position sample while the advert was lost); ``tx_power`` (dBm), the two models and
``distance_m`` are optional and may be sparse. This module is pure: parsing, writing and the ground truth.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from agent.clock import DAY

FORMAT = "proxitrace-trace"
VERSION = 1
COLUMNS = ("time", "receiver", "transmitter", "rssi", "tx_power", "receiver_model", "transmitter_model", "distance_m")
REQUIRED = COLUMNS[:4]
# A distance sample stands for the time until the next sample of the same pair, but for at most this long:
# a pair nobody measured for a while is not assumed to have stayed where it was.
TRUTH_HOLD_SECONDS = 60.0


class TraceError(ValueError):
    """A trace that cannot be read; the message names the line and says what is wrong."""


@dataclass(frozen=True)
class ScanBehaviour:
    """How the receivers scanned: continuously, or a few seconds every ``period_seconds`` (phone-style)."""

    duty_cycled: bool = False
    period_seconds: int = 60

    def header(self) -> str:
        if not self.duty_cycled:
            return f"# {FORMAT} v{VERSION} scan=continuous"
        return f"# {FORMAT} v{VERSION} scan=duty-cycle period={self.period_seconds}"


@dataclass(frozen=True, slots=True)
class TraceRow:
    time: float
    receiver: str
    transmitter: str
    rssi: int | None
    tx_power: int | None = None
    receiver_model: str = ""
    transmitter_model: str = ""
    distance_m: float | None = None


@dataclass(frozen=True)
class Trace:
    scan: ScanBehaviour
    rows: tuple[TraceRow, ...]

    @property
    def devices(self) -> tuple[str, ...]:
        """Everyone the trace names, as receiver or transmitter: one who heard nothing still counts (a
        close contact never heard is a miss)."""
        return tuple(sorted({r.receiver for r in self.rows} | {r.transmitter for r in self.rows}))

    @property
    def heard_anything(self) -> bool:
        return any(r.rssi is not None for r in self.rows)

    @property
    def span(self) -> tuple[float, float]:
        times = [r.time for r in self.rows]
        return min(times), max(times)


def _scan_from_header(line: str) -> ScanBehaviour:
    parts = line.lstrip("#").split()
    if len(parts) < 2 or parts[0] != FORMAT:
        raise TraceError(f"line 1: expected '# {FORMAT} v{VERSION} …', got {line[:60]!r}")
    if parts[1] != f"v{VERSION}":
        raise TraceError(f"line 1: trace version {parts[1]!r} is not supported (this agent reads v{VERSION})")
    options = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    scan = options.get("scan", "continuous")
    if scan == "continuous":
        return ScanBehaviour()
    if scan == "duty-cycle":
        try:
            period = int(options["period"])
        except (KeyError, ValueError):
            raise TraceError("line 1: scan=duty-cycle needs period=SECONDS (a whole number)") from None
        if period < 60:
            raise TraceError(f"line 1: scan period {period} s is under the 60-s sighting window")
        return ScanBehaviour(duty_cycled=True, period_seconds=period)
    raise TraceError(f"line 1: scan={scan!r}: expected continuous or duty-cycle")


def _optional_int(text: str, name: str, line: int) -> int | None:
    if not text:
        return None
    try:
        return int(text) if text.lstrip("-").isdigit() else round(float(text))
    except ValueError:
        raise TraceError(f"line {line}: {name} {text[:20]!r} is not a number") from None


def parse_trace(text: str) -> Trace:
    """A trace from its CSV text, or TraceError naming the first bad line."""
    first, _, rest = text.partition("\n")
    scan = _scan_from_header(first.strip())
    reader = csv.reader(io.StringIO(rest))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header[: len(REQUIRED)]) != REQUIRED:
        raise TraceError(f"line 2: expected the header {','.join(COLUMNS)}")
    names = [h.strip() for h in header]
    unknown = set(names) - set(COLUMNS)
    if unknown:
        raise TraceError(f"line 2: unknown column(s) {', '.join(sorted(unknown))}")
    at = {name: i for i, name in enumerate(names)}
    optional = [at.get(c) for c in COLUMNS[4:]]
    rows = []
    for n, cells in enumerate(reader, start=3):
        if not cells:
            continue
        if len(cells) != len(names):
            raise TraceError(f"line {n}: {len(cells)} fields, the header has {len(names)}")
        text_t, rx, tx, text_rssi = cells[0].strip(), cells[1].strip(), cells[2].strip(), cells[3].strip()
        tx_power, rx_model, tx_model, distance = (cells[i].strip() if i is not None else "" for i in optional)
        try:
            t = float(text_t)
        except ValueError:
            raise TraceError(f"line {n}: time {text_t[:20]!r} is not unix seconds") from None
        if not math.isfinite(t):
            raise TraceError(f"line {n}: time must be finite")
        if not rx or not tx:
            raise TraceError(f"line {n}: receiver and transmitter must not be empty")
        try:
            d = float(distance) if distance else None
        except ValueError:
            raise TraceError(f"line {n}: distance_m {distance[:20]!r} is not a number") from None
        if d is not None and not (math.isfinite(d) and d >= 0):
            raise TraceError(f"line {n}: distance_m must be a non-negative number")
        rows.append(
            TraceRow(
                t,
                rx,
                tx,
                _optional_int(text_rssi, "rssi", n),
                _optional_int(tx_power, "tx_power", n),
                rx_model,
                tx_model,
                d,
            )
        )
    if not rows:
        raise TraceError("the trace has no rows")
    rows.sort(key=lambda r: r.time)
    return Trace(scan, tuple(rows))


def format_trace(trace: Trace) -> Iterator[str]:
    """The trace as CSV lines (each ending in a newline), header first."""
    yield trace.scan.header() + "\n"
    yield ",".join(COLUMNS) + "\n"
    for r in trace.rows:
        yield (
            f"{r.time:.3f},{r.receiver},{r.transmitter},{'' if r.rssi is None else r.rssi},"
            f"{'' if r.tx_power is None else r.tx_power},{r.receiver_model},{r.transmitter_model},"
            f"{'' if r.distance_m is None else f'{r.distance_m:.2f}'}\n"
        )


@dataclass(frozen=True)
class PairTruth:
    """Ground truth of one (receiver, transmitter) pair: close minutes per UTC day (day number)."""

    receiver: str
    transmitter: str
    close_minutes: dict[int, float]

    def contact(self, minutes: float) -> bool:
        return any(m >= minutes for m in self.close_minutes.values())


def ground_truth(rows: Iterable[TraceRow], contact_distance_m: float) -> dict[tuple[str, str], PairTruth]:
    """Minutes per day each pair spent within ``contact_distance_m``, from the rows' distances.

    Distance is symmetric, so a sample from either direction counts for both (a -> b and b -> a): truth
    must not depend on which side happened to hear. Each sample holds until the next one of the pair,
    for at most TRUTH_HOLD_SECONDS; repeated samples at one instant count once.
    """
    samples: dict[frozenset[str], dict[float, float]] = defaultdict(dict)
    names: set[tuple[str, str]] = set()
    for r in rows:
        if r.receiver == r.transmitter:
            continue
        names.add((r.receiver, r.transmitter))
        if r.distance_m is not None:
            samples[frozenset((r.receiver, r.transmitter))].setdefault(r.time, r.distance_m)
    close: dict[frozenset[str], dict[int, float]] = {}
    for pair, by_time in samples.items():
        minutes: dict[int, float] = defaultdict(float)
        times = sorted(by_time)
        for t, nxt in zip(times, [*times[1:], math.inf], strict=True):
            if by_time[t] <= contact_distance_m:
                minutes[int(t // DAY)] += min(nxt - t, TRUTH_HOLD_SECONDS) / 60
        close[pair] = dict(minutes)
    return {
        (rx, tx): PairTruth(rx, tx, close.get(frozenset((rx, tx)), {}))
        for rx, tx in sorted(names | {(b, a) for a, b in names})
    }
