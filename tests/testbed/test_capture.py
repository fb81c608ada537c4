"""capture.py's per-set reading of btmon captures: constructed captures in BTSnoop's documented layout
(monitor datalink 2001; command = monitor opcode 2, event = 3), legacy and extended advertising commands
each answered by a Command Complete as a controller answers them."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from agent.schemes.base import advertising_data
from agent.testbed.capture import (
    LE_CLEAR_ADV_SETS,
    LE_REMOVE_ADV_SET,
    LE_SET_ADV_DATA,
    LE_SET_ADV_ENABLE,
    LE_SET_ADV_SET_RANDOM_ADDRESS,
    LE_SET_EXT_ADV_DATA,
    LE_SET_EXT_ADV_ENABLE,
    LE_SET_RANDOM_ADDRESS,
    controllers,
    linkability,
)

EPOCH_DELTA_US = 0x00DCDDB30F2F8000
T0 = 1_800_000_000.0
COMMAND_DISALLOWED = 0x0C


class Snoop:
    """A btmon capture being written; every command is answered (status 0 unless told) 1 ms later."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.records: list[bytes] = []

    def _record(self, opcode: int, t: float, data: bytes) -> None:
        ts = round(t * 1e6) + EPOCH_DELTA_US
        flags = self.index << 16 | opcode
        self.records.append(struct.pack(">IIIIq", len(data), len(data), flags, 0, ts) + data)

    def command(self, t: float, op: int, params: bytes, status: int = 0) -> None:
        self._record(2, t, op.to_bytes(2, "little") + bytes([len(params)]) + params)
        self._record(3, t + 0.001, bytes([0x0E, 4, 1]) + op.to_bytes(2, "little") + bytes([status]))

    # legacy advertising: one implicit set
    def legacy_address(self, t: float, addr: bytes, status: int = 0) -> None:
        self.command(t, LE_SET_RANDOM_ADDRESS, addr, status)

    def legacy_data(self, t: float, ad: bytes) -> None:
        self.command(t, LE_SET_ADV_DATA, bytes([len(ad)]) + ad.ljust(31, b"\0"))

    def legacy_enable(self, t: float, on: bool) -> None:
        self.command(t, LE_SET_ADV_ENABLE, bytes([on]))

    # extended advertising: a set per handle
    def set_address(self, t: float, handle: int, addr: bytes) -> None:
        self.command(t, LE_SET_ADV_SET_RANDOM_ADDRESS, bytes([handle]) + addr)

    def set_data(self, t: float, handle: int, ad: bytes) -> None:
        self.command(t, LE_SET_EXT_ADV_DATA, bytes([handle, 3, 1, len(ad)]) + ad)

    def set_enable(self, t: float, on: bool, *handles: int) -> None:
        per_set = b"".join(bytes([h, 0, 0, 0]) for h in handles)
        self.command(t, LE_SET_EXT_ADV_ENABLE, bytes([on, len(handles)]) + per_set)

    def write(self, path: Path) -> Path:
        path.write_bytes(b"btsnoop\0" + struct.pack(">II", 1, 2001) + b"".join(self.records))
        return path


def address(n: int) -> bytes:
    return bytes([n, 2, 3, 4, 5, 0x3F])  # little-endian on the wire; top bits 00: non-resolvable


def an_id() -> bytes:
    return advertising_data(0xFD6F, os.urandom(20))


def test_legacy_rotations_give_one_gap_each_and_one_pair_each(tmp_path: Path) -> None:
    s = Snoop()
    for k in range(3):
        t = T0 + 10 * k
        s.legacy_enable(t, False)
        s.legacy_address(t + 0.01, address(k))
        s.legacy_data(t + 0.02, an_id())
        s.legacy_enable(t + 0.05, True)
    trace = controllers(s.write(tmp_path / "c.snoop"))[0]
    assert [a for _, a, _ in trace.on_air] == ["3F:05:04:03:02:00", "3F:05:04:03:02:01", "3F:05:04:03:02:02"]
    assert trace.gaps() == pytest.approx([0.05, 0.05, 0.05])
    assert trace.overlaps() == []
    assert linkability([(a, ad) for _, a, ad in trace.on_air]).violations == 0


def test_make_before_break_on_two_sets_leaves_no_gap_and_is_counted_as_overlap(tmp_path: Path) -> None:
    s = Snoop(index=3)
    s.set_address(T0, 1, address(1))
    s.set_data(T0 + 0.01, 1, an_id())
    s.set_enable(T0 + 0.02, True, 1)
    for k, (new, old) in enumerate([(2, 1), (1, 2), (2, 1)], start=1):
        t = T0 + 10 * k
        s.set_address(t, new, address(10 + k))
        s.set_data(t + 0.01, new, an_id())
        s.set_enable(t + 0.02, True, new)
        s.set_enable(t + 0.05, False, old)
        s.command(t + 0.06, LE_REMOVE_ADV_SET, bytes([old]))
    trace = controllers(s.write(tmp_path / "c.snoop"))[3]
    assert trace.gaps() == []  # the air was never empty
    assert trace.overlaps() == pytest.approx([0.03, 0.03, 0.03])
    assert [h for _, h, _, _ in trace.set_on_air] == [1, 2, 1, 2]
    assert linkability([(a, ad) for _, a, ad in trace.on_air]).violations == 0


def test_time_with_no_set_enabled_is_the_gap_however_many_sets(tmp_path: Path) -> None:
    """Set 1 goes off, set 2 is still on (no gap), then set 2 goes off 0.2 s before set 1 returns (a gap);
    a disable of zero sets turns every set off; removing or clearing sets ends their time on air too."""
    s = Snoop()
    for handle in (1, 2):
        s.set_address(T0, handle, address(handle))
        s.set_data(T0, handle, an_id())
    s.set_enable(T0 + 1, True, 1, 2)
    s.set_enable(T0 + 2, False, 1)
    s.set_enable(T0 + 3, False, 2)
    s.set_address(T0 + 3.1, 1, address(3))
    s.set_data(T0 + 3.1, 1, an_id())
    s.set_enable(T0 + 3.2, True, 1)
    s.set_enable(T0 + 4, False)  # zero sets: all off
    s.set_address(T0 + 4.1, 2, address(4))
    s.set_data(T0 + 4.1, 2, an_id())
    s.set_enable(T0 + 4.5, True, 2)
    s.command(T0 + 5, LE_REMOVE_ADV_SET, bytes([2]))
    s.set_address(T0 + 5.1, 1, address(5))
    s.set_data(T0 + 5.1, 1, an_id())
    s.set_enable(T0 + 5.4, True, 1)
    s.command(T0 + 6, LE_CLEAR_ADV_SETS, b"")
    trace = controllers(s.write(tmp_path / "c.snoop"))[0]
    assert trace.gaps() == pytest.approx([0.2, 0.5, 0.4])
    assert trace.gaps(since=T0 + 4.5) == pytest.approx([0.4])
    assert trace.enabled_sets[-1] == (pytest.approx(T0 + 6), 0)
    assert linkability([(a, ad) for _, a, ad in trace.on_air]).violations == 0


def test_new_data_on_a_set_that_is_on_air_pairs_the_new_id_with_the_old_address(tmp_path: Path) -> None:
    s = Snoop()
    s.set_address(T0, 1, address(1))
    s.set_data(T0, 1, an_id())
    s.set_enable(T0 + 1, True, 1)
    s.set_data(T0 + 2, 1, an_id())  # in place, while enabled
    trace = controllers(s.write(tmp_path / "c.snoop"))[0]
    assert len(trace.on_air) == 2 and trace.on_air[0][1] == trace.on_air[1][1]
    assert linkability([(a, ad) for _, a, ad in trace.on_air]).addresses_with_several_ids == 1


def test_two_sets_sharing_one_id_under_two_addresses_is_a_violation(tmp_path: Path) -> None:
    s = Snoop()
    ad = an_id()
    for handle in (1, 2):
        s.set_address(T0, handle, address(handle))
        s.set_data(T0, handle, ad)
    s.set_enable(T0 + 1, True, 1, 2)
    trace = controllers(s.write(tmp_path / "c.snoop"))[0]
    assert linkability([(a, ad) for _, a, ad in trace.on_air]).ids_with_several_addresses == 1


def test_a_refused_address_change_leaves_the_old_address_under_the_new_id(tmp_path: Path) -> None:
    """The Pi's case: LE Set Random Address refused while scanning, so the new ID goes out under the old
    address. Only the Command Complete tells; reading the command alone would miss the link."""
    s = Snoop()
    s.legacy_address(T0, address(1))
    s.legacy_data(T0, an_id())
    s.legacy_enable(T0 + 0.1, True)
    s.legacy_enable(T0 + 10, False)
    s.legacy_address(T0 + 10.01, address(2), status=COMMAND_DISALLOWED)
    s.legacy_data(T0 + 10.02, an_id())
    s.legacy_enable(T0 + 10.05, True)
    trace = controllers(s.write(tmp_path / "c.snoop"))[0]
    assert [a for _, a, _ in trace.on_air] == ["3F:05:04:03:02:01"] * 2
    assert linkability([(a, ad) for _, a, ad in trace.on_air]).addresses_with_several_ids == 1


def test_a_failed_enable_is_recorded_and_puts_nothing_on_air(tmp_path: Path) -> None:
    s = Snoop()
    s.set_address(T0, 1, address(1))
    s.set_data(T0, 1, an_id())
    s.command(T0 + 1, LE_SET_EXT_ADV_ENABLE, bytes([1, 1, 1, 0, 0, 0]), status=COMMAND_DISALLOWED)
    trace = controllers(s.write(tmp_path / "c.snoop"))[0]
    assert trace.enables == [(pytest.approx(T0 + 1), True, False)]
    assert trace.on_air == [] and trace.gaps() == []
