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
EVT_COMMAND_COMPLETE = 0x0E
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
            elif op == LE_SET_ADV_DATA and params:
                payload[p.index] = params[1 : 1 + params[0]]
            elif op == LE_SET_ADV_ENABLE and params:
                pending[p.index] = (p.time, params[0] == 1)
        elif p.opcode == OP_EVENT and len(p.data) >= 6 and p.data[0] == EVT_COMMAND_COMPLETE:
            op = int.from_bytes(p.data[3:5], "little")
            if op == LE_SET_ADV_ENABLE and p.index in pending:
                t, enable = pending.pop(p.index)
                ok = p.data[5] == 0
                trace.enables.append((t, enable, ok))
                if enable and ok:
                    trace.on_air.append((t, address[p.index], payload[p.index]))
    return traces


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
