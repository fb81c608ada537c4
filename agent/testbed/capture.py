"""Reads a btmon capture (``btmon -w``, BTSnoop format) and checks what our controllers put on air.

Field engineers and the real-BlueZ tests ask the same questions of a capture: which random address
carried which advertising payload, did every rotation end with advertising enabled again, and how long
was each controller silent while rotating? The answers come from the HCI commands themselves, so they hold
for any controller bluetoothd drives.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.schemes.base import DecodedAdvert
from agent.schemes.decoder import decode_advertising_data

BTSNOOP_MAGIC = b"btsnoop\0"
MONITOR_DATALINK = 2001
OP_COMMAND, OP_EVENT = 2, 3
LE_SET_RANDOM_ADDRESS = 0x2005
LE_SET_ADV_DATA = 0x2008
LE_SET_ADV_ENABLE = 0x200A
LE_SET_ADV_SET_RANDOM_ADDRESS = 0x2035  # extended advertising: (handle, address)
LE_SET_EXT_ADV_DATA = 0x2037  # extended advertising: (handle, operation, fragment preference, length, data)
LE_SET_EXT_ADV_ENABLE = 0x2039  # (enable, number of sets, then per set: handle, duration 2, max events)
LE_REMOVE_ADV_SET = 0x203C  # (handle)
LE_CLEAR_ADV_SETS = 0x203D
LEGACY_SET = -1  # legacy advertising: the controller's one implicit set, under its one random address
EVT_COMMAND_COMPLETE = 0x0E
EVT_LE_META = 0x3E
LE_ADVERTISING_REPORT = 0x02
LE_EXTENDED_ADVERTISING_REPORT = 0x0D
NOT_AVAILABLE = 127  # RSSI or TX power a controller could not give
_EPOCH_DELTA_US = 0x00DCDDB30F2F8000  # BTSnoop timestamps count from year 0


class TraceError(ValueError):
    pass


@dataclass(frozen=True)
class Packet:
    index: int
    opcode: int  # monitor opcode: 2 command, 3 event
    time: float
    data: bytes


def read_packets(path: Path) -> Iterator[Packet]:
    raw = path.read_bytes()
    if raw[:8] != BTSNOOP_MAGIC:
        raise TraceError(f"{path}: not a BTSnoop capture")
    datalink = struct.unpack(">I", raw[12:16])[0]
    if datalink != MONITOR_DATALINK:
        raise TraceError(f"{path}: datalink {datalink}, expected btmon's monitor format ({MONITOR_DATALINK})")
    offset = 16
    while offset + 24 <= len(raw):
        _orig, incl, flags, _drops, ts = struct.unpack(">IIIIq", raw[offset : offset + 24])
        data = raw[offset + 24 : offset + 24 + incl]
        offset += 24 + incl
        if len(data) < incl:
            break  # a capture cut short while btmon was writing
        yield Packet(flags >> 16, flags & 0xFFFF, (ts - _EPOCH_DELTA_US) / 1e6, data)


@dataclass
class ControllerTrace:
    """What one controller was told to do with advertising, in order, per advertising set.

    A legacy controller has one implicit set (``LEGACY_SET``); an extended one has a set per handle, each
    with its own random address, payload and enable state, so several can be on air at once. ``on_air``
    holds every (address, payload) pair a set put on air: when it was enabled, and again whenever its data
    or address changed while enabled (an in-place update pairs the new with the old)."""

    index: int
    on_air: list[tuple[float, str | None, bytes]] = field(default_factory=list)  # (from, address, payload)
    enables: list[tuple[float, bool, bool]] = field(default_factory=list)  # (time, enable?, succeeded?)
    set_on_air: list[tuple[float, int, str | None, bytes]] = field(default_factory=list)  # (from, handle, ...)
    enabled_sets: list[tuple[float, int]] = field(default_factory=list)  # (time, sets enabled from then on)

    def off_air(self, since: float = 0.0) -> list[tuple[float, float]]:
        """(from, seconds) of each time no set was enabled until advertising came back, for those starting
        after ``since``: the time off air of a rotation, however many sets the controller has."""
        periods, off_at = [], None
        for t, count in self.enabled_sets:
            if count == 0 and off_at is None:
                off_at = t
            elif count > 0 and off_at is not None:
                if off_at >= since:
                    periods.append((off_at, t - off_at))
                off_at = None
        return periods

    def gaps(self, since: float = 0.0) -> list[float]:
        """Seconds of each time off air (see ``off_air``)."""
        return [seconds for _, seconds in self.off_air(since)]

    def overlaps(self, since: float = 0.0) -> list[float]:
        """Seconds with two or more sets enabled at once (make-before-break rotations), after ``since``."""
        out, from_t = [], None
        for t, count in self.enabled_sets:
            if count >= 2 and from_t is None:
                from_t = t
            elif count < 2 and from_t is not None:
                if from_t >= since:
                    out.append(t - from_t)
                from_t = None
        return out


@dataclass
class _Set:
    address: str | None = None
    payload: bytes = b""
    enabled: bool = False


class _Controller:
    """The sets of one controller as the HCI commands that completed successfully left them."""

    def __init__(self, trace: ControllerTrace) -> None:
        self.trace = trace
        self.sets: dict[int, _Set] = {}

    def get(self, handle: int) -> _Set:
        return self.sets.setdefault(handle, _Set())

    def changed(self, t: float, handle: int, address: str | None = None, payload: bytes | None = None) -> None:
        """New address or payload for a set; one that is on air starts a new (address, payload) pair now."""
        s = self.get(handle)
        before = (s.address, s.payload)
        s.address = address if address is not None else s.address
        s.payload = payload if payload is not None else s.payload
        if s.enabled and (s.address, s.payload) != before:
            self._on_air(t, handle, s)

    def enable(self, t: float, handles: list[int] | None, on: bool) -> None:
        """Enable or disable the listed sets (``None``: all of them, as a disable of zero sets means)."""
        targets = list(self.sets) if handles is None else handles
        for handle in targets:
            s = self.get(handle)
            if on and not s.enabled:
                s.enabled = True
                self._on_air(t, handle, s)
            elif not on:
                s.enabled = False
        self._count(t)

    def remove(self, t: float, handle: int | None) -> None:
        for h in list(self.sets) if handle is None else [handle]:
            self.sets.pop(h, None)
        self._count(t)

    def _on_air(self, t: float, handle: int, s: _Set) -> None:
        self.trace.on_air.append((t, s.address, s.payload))
        self.trace.set_on_air.append((t, handle, s.address, s.payload))

    def _count(self, t: float) -> None:
        count = sum(1 for s in self.sets.values() if s.enabled)
        if not self.trace.enabled_sets or self.trace.enabled_sets[-1][1] != count:
            self.trace.enabled_sets.append((t, count))


def _addr(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in raw[::-1])


def _apply(c: _Controller, t: float, op: int, params: bytes) -> None:
    """One LE advertising command that completed successfully, sent at ``t``."""
    if op == LE_SET_RANDOM_ADDRESS and len(params) >= 6:
        c.changed(t, LEGACY_SET, address=_addr(params[:6]))
    elif op == LE_SET_ADV_DATA and params:
        c.changed(t, LEGACY_SET, payload=params[1 : 1 + params[0]])
    elif op == LE_SET_ADV_ENABLE and params:
        c.enable(t, [LEGACY_SET], params[0] == 1)
    elif op == LE_SET_ADV_SET_RANDOM_ADDRESS and len(params) >= 7:
        c.changed(t, params[0], address=_addr(params[1:7]))
    elif op == LE_SET_EXT_ADV_DATA and len(params) >= 4:
        c.changed(t, params[0], payload=params[4 : 4 + params[3]])
    elif op == LE_SET_EXT_ADV_ENABLE and len(params) >= 2:
        count = params[1]
        handles = [params[2 + 4 * i] for i in range(count) if 2 + 4 * i < len(params)]
        c.enable(t, handles if count else None, params[0] == 1)
    elif op == LE_REMOVE_ADV_SET and params:
        c.remove(t, params[0])
    elif op == LE_CLEAR_ADV_SETS:
        c.remove(t, None)


_TRACKED = frozenset(
    {
        LE_SET_RANDOM_ADDRESS,
        LE_SET_ADV_DATA,
        LE_SET_ADV_ENABLE,
        LE_SET_ADV_SET_RANDOM_ADDRESS,
        LE_SET_EXT_ADV_DATA,
        LE_SET_EXT_ADV_ENABLE,
        LE_REMOVE_ADV_SET,
        LE_CLEAR_ADV_SETS,
    }
)
_ENABLES = frozenset({LE_SET_ADV_ENABLE, LE_SET_EXT_ADV_ENABLE})


def controllers(path: Path) -> dict[int, ControllerTrace]:
    """Per controller index: every (address, payload) pair a set put on air, every enable/disable, and how
    many sets were enabled over time.

    A command takes effect when its Command Complete reports success (a refused LE Set Random Address leaves
    the old address, a refused enable leaves the set off); its time is when it was sent. The payload and the
    address are set by separate commands (bluetoothd sets the data first); what goes on air is the pair in
    force when the set is enabled, or when either changes while it is.
    """
    traces: dict[int, ControllerTrace] = {}
    state: dict[int, _Controller] = {}
    pending: dict[tuple[int, int], tuple[float, bytes]] = {}
    for p in read_packets(path):
        trace = traces.setdefault(p.index, ControllerTrace(p.index))
        c = state.setdefault(p.index, _Controller(trace))
        if p.opcode == OP_COMMAND and len(p.data) >= 3:
            op = int.from_bytes(p.data[:2], "little")
            if op in _TRACKED:
                pending[(p.index, op)] = (p.time, p.data[3 : 3 + p.data[2]])
        elif p.opcode == OP_EVENT and len(p.data) >= 6 and p.data[0] == EVT_COMMAND_COMPLETE:
            op = int.from_bytes(p.data[3:5], "little")
            sent = pending.pop((p.index, op), None)
            if sent is None:
                continue
            t, params = sent
            ok = p.data[5] == 0
            if op in _ENABLES and params:
                trace.enables.append((t, params[0] == 1, ok))
            if ok:
                _apply(c, t, op, params)
    return traces


@dataclass(frozen=True)
class Report:
    """One advert a controller heard: when, from which address, its advertising data and the levels."""

    time: float
    address: str
    data: bytes
    rssi: int | None  # dBm; None when the controller gave 127 ("not available")
    tx_power: int | None  # dBm, from an extended report when the sender put it in the header


def _level(byte: int) -> int | None:
    signed = byte - 256 if byte > 127 else byte
    return None if signed == NOT_AVAILABLE else signed


def _legacy_reports(time: float, params: bytes) -> Iterator[Report]:
    """LE Advertising Report (Core spec Vol 4 Part E 7.7.65.2): per report event type, address type,
    address, data length, data, RSSI; read report after report, as Linux does."""
    offset = 1
    for _ in range(params[0] if params else 0):
        if offset + 9 > len(params):
            return
        length = params[offset + 8]
        end = offset + 9 + length
        if end + 1 > len(params):
            return
        yield Report(time, _addr(params[offset + 2 : offset + 8]), params[offset + 9 : end], _level(params[end]), None)
        offset = end + 1


def _extended_reports(time: float, params: bytes) -> Iterator[Report]:
    """LE Extended Advertising Report (7.7.65.13): 24 fixed bytes per report (event type 2, address type,
    address 6, primary and secondary PHY, SID, TX power, RSSI, periodic interval 2, direct address type and
    address 7), then data length and data."""
    offset = 1
    for _ in range(params[0] if params else 0):
        if offset + 24 > len(params):
            return
        fixed = params[offset : offset + 24]
        end = offset + 24 + fixed[23]
        if end > len(params):
            return
        yield Report(time, _addr(fixed[3:9]), params[offset + 24 : end], _level(fixed[13]), _level(fixed[12]))
        offset = end


def reports(path: Path) -> Iterator[Report]:
    """Every advertising report the capture's controllers handed to the host, legacy and extended."""
    for p in read_packets(path):
        if p.opcode != OP_EVENT or len(p.data) < 3 or p.data[0] != EVT_LE_META:
            continue
        params = p.data[3 : 2 + p.data[1]]
        if p.data[2] == LE_ADVERTISING_REPORT:
            yield from _legacy_reports(p.time, params)
        elif p.data[2] == LE_EXTENDED_ADVERTISING_REPORT:
            yield from _extended_reports(p.time, params)


@dataclass(frozen=True)
class Linkability:
    """Addresses seen with more than one ID, IDs seen with more than one address, static addresses."""

    adverts: int
    addresses_with_several_ids: int
    ids_with_several_addresses: int
    non_random_addresses: int

    @property
    def violations(self) -> int:
        return self.addresses_with_several_ids + self.ids_with_several_addresses + self.non_random_addresses


def linkability(on_air: list[tuple[str | None, bytes]]) -> Linkability:
    """Check (address, advertising payload) pairs: each random address must carry one ID and vice versa."""
    ids_of: dict[str, set[bytes]] = defaultdict(set)
    addresses_of: dict[bytes, set[str]] = defaultdict(set)
    static = 0
    count = 0
    for address, ad in on_air:
        decoded = decode_advertising_data(ad)
        if not isinstance(decoded, DecodedAdvert):
            continue
        count += 1
        if address is None or int(address[:2], 16) >> 6 != 0:
            static += 1  # public, static random or resolvable: not a fresh non-resolvable address
            continue
        ids_of[address].add(decoded.ephemeral_id)
        addresses_of[decoded.ephemeral_id].add(address)
    return Linkability(
        adverts=count,
        addresses_with_several_ids=sum(1 for v in ids_of.values() if len(v) > 1),
        ids_with_several_addresses=sum(1 for v in addresses_of.values() if len(v) > 1),
        non_random_addresses=static,
    )
