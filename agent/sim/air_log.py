"""The air log: every advertisement the simulator put on air, and the checks computed from it.

Unlinkability is a property of what goes on air, not of what the agent believes it did, so the simulator
writes one JSON line per advertising *instance* (a payload under one random address, from the moment it is
on air until it stops) and the tests and the test-bed compute their figures from that file alone:

``{"e": "start", "t": T, "run": R}``                        the simulator (re)started
``{"e": "on", "t": T, "i": I, "a": "hci0", "addr": A, "sd": {uuid: hex}, "uuids": [...], "tx": n|null}``
``{"e": "off", "t": T, "i": I, "n": events, "rx": reports, "why": reason}``
``{"e": "refused", "t": T, "a": "hci0", "why": reason}``    registered over D-Bus, never on air
``{"e": "stop", "t": T, "run": R}``                         clean shutdown

Times are simulated unix seconds. ``n`` counts advertising events (one per interval), ``rx`` the reports
delivered to scanning adapters. A simulator killed with SIGKILL leaves instances without an "off" line; the
reader closes them at the next "start" (or leaves them open at the end of the file).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agent.schemes.base import DecodedAdvert
from agent.schemes.decoder import decode_service_data

# Why an instance stopped. The first two are the agent's own doing; the rest are outages the agent could not
# prevent, after which re-registering the same ID under a new address is expected.
END_UNREGISTERED = "unregistered"
END_DATA_CHANGED = "data-changed"
END_CLIENT_GONE = "client-gone"
END_ADAPTER_REMOVED = "adapter-removed"
END_POWERED_OFF = "powered-off"
END_SERVICE_STOP = "service-stop"
END_SERVICE_LOST = "service-lost"
FORCED_ENDS = frozenset({END_CLIENT_GONE, END_ADAPTER_REMOVED, END_POWERED_OFF, END_SERVICE_STOP, END_SERVICE_LOST})


class AirLogWriter:
    """Appends records, one line each, flushed at once: rotations are rare, losing one to a crash is not."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ReceiveLog:
    """What each scanning adapter was handed, one CSV line per report: ``t,receiver,transmitter,rssi,
    tx_power,distance_m`` (simulated seconds, adapter names, dBm, metres). The test-bed turns it into a
    trace. Buffered: unlike the air log it is written for every report, and read only after a clean stop."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, t: float, receiver: str, transmitter: str, rssi: int, tx_power: int, distance_m: float) -> None:
        self._file.write(f"{t:.3f},{receiver},{transmitter},{rssi},{tx_power},{distance_m:.3f}\n")

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class AirInstance:
    """One payload under one address, on air from ``on`` to ``off`` (None: still on, or the log ends)."""

    key: str
    adapter: str
    address: str
    service_data: tuple[tuple[str, bytes], ...]
    tx_power: int | None
    on: float
    off: float | None
    events: int | None
    reports: int | None
    ended_by: str | None


@dataclass(frozen=True)
class Violation:
    """An unlinkability failure; ``after_outage`` marks an ID re-registered after an outage it did not cause."""

    kind: str  # "static-address" | "address-with-several-ids" | "id-with-several-addresses"
    address: str | None
    detail: str
    after_outage: bool = False


@dataclass(frozen=True)
class AirSummary:
    instances: int
    adverts_on_air: int
    reports_delivered: int
    addresses: int
    refused: int
    restarts: int
    violations: tuple[Violation, ...]


def read_air_log(path: Path) -> list[dict[str, Any]]:
    """All records; an incomplete last line (the simulator was killed mid-write) is skipped, others raise."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON air-log record") from None
        if not isinstance(record, dict) or "e" not in record or "t" not in record:
            raise ValueError(f"{path}:{number}: air-log record without 'e' and 't'")
        records.append(record)
    return records


def instances(records: Iterable[dict[str, Any]]) -> list[AirInstance]:
    opened: dict[str, dict[str, Any]] = {}
    out: list[AirInstance] = []

    def close(key: str, t: float | None, events: int | None, reports: int | None, why: str | None) -> None:
        rec = opened.pop(key)
        out.append(
            AirInstance(
                key=key,
                adapter=rec["a"],
                address=rec["addr"],
                service_data=tuple(sorted((u, bytes.fromhex(h)) for u, h in rec.get("sd", {}).items())),
                tx_power=rec.get("tx"),
                on=float(rec["t"]),
                off=t,
                events=events,
                reports=reports,
                ended_by=why,
            )
        )

    for rec in records:
        kind = rec["e"]
        if kind == "on":
            opened[rec["i"]] = rec
        elif kind == "off" and rec.get("i") in opened:
            close(rec["i"], float(rec["t"]), rec.get("n"), rec.get("rx"), rec.get("why"))
        elif kind == "start":
            for key in list(opened):
                close(key, float(rec["t"]), None, None, END_SERVICE_LOST)
    for key in list(opened):
        close(key, None, None, None, None)
    out.sort(key=lambda i: (i.on, i.key))
    return out


def ephemeral_id_of(instance: AirInstance) -> bytes:
    """The ID an instance carries: the decoded ephemeral ID of a contact-tracing payload, else the raw bytes."""
    for uuid, data in instance.service_data:
        decoded = decode_service_data(uuid, data)
        if isinstance(decoded, DecodedAdvert):
            return decoded.ephemeral_id
    return b"".join(uuid.encode() + data for uuid, data in instance.service_data)


def is_non_resolvable_private(address: str) -> bool:
    """Top two bits of the most significant byte 00, and neither all zeros nor all ones in the rest."""
    try:
        raw = bytes.fromhex(address.replace(":", ""))
    except ValueError:
        return False
    if len(raw) != 6 or raw[0] >> 6 != 0:
        return False
    rest = int.from_bytes(raw, "big") & ((1 << 46) - 1)
    return rest not in (0, (1 << 46) - 1)


def violations(
    items: Iterable[AirInstance], id_of: Callable[[AirInstance], bytes] = ephemeral_id_of
) -> list[Violation]:
    items = list(items)
    out: list[Violation] = []
    ids_by_address: dict[str, set[bytes]] = defaultdict(set)
    by_id: dict[bytes, list[AirInstance]] = defaultdict(list)
    for inst in items:
        ident = id_of(inst)
        ids_by_address[inst.address].add(ident)
        by_id[ident].append(inst)
    for address in sorted(ids_by_address):
        if not is_non_resolvable_private(address):
            out.append(Violation("static-address", address, "not a non-resolvable private address"))
        if len(ids_by_address[address]) > 1:
            out.append(Violation("address-with-several-ids", address, f"{len(ids_by_address[address])} IDs under it"))
    for group in by_id.values():
        addresses = sorted({i.address for i in group})
        if len(addresses) > 1:
            ordered = sorted(group, key=lambda i: i.on)
            changes = [b for a, b in itertools.pairwise(ordered) if a.address != b.address]
            forced = all(_ended_by_before(ordered, c) in FORCED_ENDS for c in changes)
            out.append(
                Violation(
                    "id-with-several-addresses",
                    None,
                    f"one ID under {len(addresses)} addresses (on air from t={ordered[0].on:.0f})",
                    after_outage=forced,
                )
            )
    return out


def _ended_by_before(ordered: list[AirInstance], later: AirInstance) -> str | None:
    earlier = [i for i in ordered if i.on < later.on or (i.on == later.on and i.key < later.key)]
    return earlier[-1].ended_by if earlier else None


def outside_validity(
    items: Iterable[AirInstance],
    window_of: Callable[[AirInstance], tuple[float, float] | None],
    tolerance_s: float,
) -> list[AirInstance]:
    """Instances on air outside their ID's validity window (± tolerance): a rotation came late or early."""
    late = []
    for inst in items:
        window = window_of(inst)
        if window is None:
            continue
        start, end = window
        off = inst.off if inst.off is not None else inst.on
        if inst.on < start - tolerance_s or off > end + tolerance_s:
            late.append(inst)
    return late


def summarize(records: Iterable[dict[str, Any]]) -> AirSummary:
    records = list(records)
    items = instances(records)
    return AirSummary(
        instances=len(items),
        adverts_on_air=sum(i.events or 0 for i in items),
        reports_delivered=sum(i.reports or 0 for i in items),
        addresses=len({i.address for i in items}),
        refused=sum(1 for r in records if r["e"] == "refused"),
        restarts=max(0, sum(1 for r in records if r["e"] == "start") - 1),
        violations=tuple(violations(items)),
    )
