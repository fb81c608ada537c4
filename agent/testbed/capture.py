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
LE_SET_EXT_ADV_ENABLE = 0x2039
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
    """What one controller was told to do with advertising, in order."""

    index: int
    on_air: list[tuple[float, str | None, bytes]] = field(default_factory=list)  # (enabled at, address, payload)
    enables: list[tuple[float, bool, bool]] = field(default_factory=list)  # (time, enable?, succeeded?)

    def gaps(self, since: float = 0.0) -> list[float]:
        """Seconds between each successful disable and the next successful enable (time off air), for
        the rotations that started after ``since``."""
        gaps, off_at = [], None
        for t, enable, ok in self.enables:
            if not ok or t < since:
                continue
            if not enable:
                off_at = t
            elif off_at is not None:
                gaps.append(t - off_at)
                off_at = None
        return gaps


def controllers(path: Path) -> dict[int, ControllerTrace]:
    """Per controller index: every (address, payload) that went on air, and every enable/disable.

    The payload and the random address are set by separate commands (bluetoothd sets the data first);
    what goes on air is the pair in force when advertising is successfully enabled.
    """
    traces: dict[int, ControllerTrace] = {}
    address: dict[int, str | None] = defaultdict(lambda: None)
    payload: dict[int, bytes] = defaultdict(bytes)
    pending: dict[int, tuple[float, bool]] = {}
    for p in read_packets(path):
        trace = traces.setdefault(p.index, ControllerTrace(p.index))
        if p.opcode == OP_COMMAND and len(p.data) >= 3:
            op = int.from_bytes(p.data[:2], "little")
            params = p.data[3:]
            if op == LE_SET_RANDOM_ADDRESS and len(params) >= 6:
                address[p.index] = ":".join(f"{b:02X}" for b in params[5::-1])
            elif op == LE_SET_ADV_SET_RANDOM_ADDRESS and len(params) >= 7:
                address[p.index] = ":".join(f"{b:02X}" for b in params[6:0:-1])
            elif op == LE_SET_ADV_DATA and params:
                payload[p.index] = params[1 : 1 + params[0]]
            elif op == LE_SET_EXT_ADV_DATA and len(params) >= 4:
                payload[p.index] = params[4 : 4 + params[3]]
            elif op in (LE_SET_ADV_ENABLE, LE_SET_EXT_ADV_ENABLE) and params:
                pending[p.index] = (p.time, params[0] == 1)
        elif p.opcode == OP_EVENT and len(p.data) >= 6 and p.data[0] == EVT_COMMAND_COMPLETE:
            op = int.from_bytes(p.data[3:5], "little")
            if op in (LE_SET_ADV_ENABLE, LE_SET_EXT_ADV_ENABLE) and p.index in pending:
                t, enable = pending.pop(p.index)
                ok = p.data[5] == 0
                trace.enables.append((t, enable, ok))
                if enable and ok:
                    trace.on_air.append((t, address[p.index], payload[p.index]))
    return traces


@dataclass(frozen=True)
class Report:
    """One advert a controller heard: when, from which address, its advertising data and the levels."""

    time: float
    address: str
    data: bytes
    rssi: int | None  # dBm; None when the controller gave 127 ("not available")
    tx_power: int | None  # dBm, from an extended report when the sender put it in the header


def _address(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in raw[::-1])


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
        yield Report(
            time, _address(params[offset + 2 : offset + 8]), params[offset + 9 : end], _level(params[end]), None
        )
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
        yield Report(time, _address(fixed[3:9]), params[offset + 24 : end], _level(fixed[13]), _level(fixed[12]))
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
