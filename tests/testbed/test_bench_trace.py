"""A real bench run becomes a trace: btsnoop captures written in the format's documented layout (BTSnoop
header, btmon's monitor datalink 2001, one record per HCI command or event), one per device, plus a
positions sheet; the command's trace is checked row by row and then replayed."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from agent.cli import cli
from agent.clock import DAY
from agent.schemes import gaen
from agent.schemes.base import advertising_data
from agent.testbed.bench_trace import parse_positions
from agent.testbed.trace import parse_trace

EPOCH_DELTA_US = 0x00DCDDB30F2F8000
START = 20_500 * DAY + 10 * 3600  # 10:00 UTC on one day
MINUTES = 30
ROTATE_EVERY = 600  # each device takes a new ID (and address) every 10 minutes
TX_POWER = -8
# name -> (x metres, rssi heard by the others); ana and ben 1 m apart, cat 6 m away from both.
PLACES = {"ana": (0.0, -60), "ben": (1.0, -60), "cat": (6.5, -80)}


class Snoop:
    """A btmon capture being written: one controller (index 0), monitor opcodes 2 (command) and 3 (event)."""

    def __init__(self) -> None:
        self.records: list[bytes] = []

    def _record(self, opcode: int, t: float, data: bytes) -> None:
        ts = round(t * 1e6) + EPOCH_DELTA_US
        self.records.append(struct.pack(">IIIIq", len(data), len(data), opcode, 0, ts) + data)

    def command(self, t: float, op: int, params: bytes, complete: bool = False) -> None:
        self._record(2, t, op.to_bytes(2, "little") + bytes([len(params)]) + params)
        if complete:
            self._record(3, t + 0.001, bytes([0x0E, 4, 1]) + op.to_bytes(2, "little") + b"\x00")

    def meta(self, t: float, subevent: int, params: bytes) -> None:
        self._record(3, t, bytes([0x3E, len(params) + 1, subevent]) + params)

    def write(self, path: Path) -> Path:
        path.write_bytes(b"btsnoop\0" + struct.pack(">II", 1, 2001) + b"".join(self.records))
        return path


def address(n: int) -> bytes:
    return bytes([n, 2, 3, 4, 5, 0x3F])  # little-endian on the wire; top bits 00: non-resolvable


def legacy_report(addr: bytes, ad: bytes, rssi: int) -> bytes:
    return bytes([1, 0x03, 1]) + addr + bytes([len(ad)]) + ad + struct.pack("b", rssi)


def extended_report(addr: bytes, ad: bytes, rssi: int, tx: int) -> bytes:
    head = b"\x01" + b"\x00\x00" + b"\x01" + addr + bytes([1, 0, 0xFF]) + struct.pack("bb", tx, rssi)
    return head + b"\x00\x00" + b"\x00" + bytes(6) + bytes([len(ad)]) + ad


def bench(tmp: Path) -> dict[str, Path]:
    """Three hosts, each capturing its own advertising commands and what it heard. Ben's controller uses
    the extended commands and reports (with TX power in the header); the others legacy ones."""
    schemes = {n: gaen.GaenScheme((gaen.new_tek(START),)) for n in PLACES}
    snoops = {n: Snoop() for n in PLACES}
    for k, t in enumerate(range(START, START + MINUTES * 60, ROTATE_EVERY)):
        for i, (name, scheme) in enumerate(schemes.items()):
            b = scheme.broadcast_at(t, TX_POWER)
            assert b is not None
            ad = advertising_data(b.service_uuid16, b.service_data)
            s, addr = snoops[name], address(16 * i + k)
            if name == "ben":
                s.command(t, 0x2039, bytes([0, 1, 1, 0, 0, 0]), complete=True)
                s.command(t, 0x2035, b"\x01" + addr, complete=True)
                s.command(t, 0x2037, bytes([1, 3, 1, len(ad)]) + ad, complete=True)
                s.command(t, 0x2039, bytes([1, 1, 1, 0, 0, 0]), complete=True)
            else:
                s.command(t, 0x200A, b"\x00", complete=True)
                s.command(t, 0x2005, addr, complete=True)
                s.command(t, 0x2008, bytes([len(ad)]) + ad.ljust(31, b"\0"), complete=True)
                s.command(t, 0x200A, b"\x01", complete=True)
            for offset in range(5, ROTATE_EVERY, 10):  # everyone else hears this ID every 10 s
                for other in PLACES:
                    if other == name:
                        continue
                    rssi = min(PLACES[name][1], PLACES[other][1])
                    if other == "ben":
                        snoops[other].meta(t + offset, 0x0D, extended_report(addr, ad, rssi, TX_POWER))
                    else:
                        snoops[other].meta(t + offset, 0x02, legacy_report(addr, ad, rssi))
    stranger = gaen.GaenScheme((gaen.new_tek(START),)).broadcast_at(START, TX_POWER)
    assert stranger is not None
    snoops["ana"].meta(
        START + 1, 0x02, legacy_report(address(99), advertising_data(0xFD6F, stranger.service_data), -70)
    )
    snoops["ana"].meta(START + 2, 0x02, legacy_report(address(98), b"\x02\x01\x06\x03\x03\xaa\xfe", -50))
    return {n: s.write(tmp / f"{n}.snoop") for n, s in snoops.items()}


def sheet(tmp: Path) -> Path:
    lines = ["device,x,y,from,until,model"]
    lines += [f"{n},{x},0,{START - 60},,dongle-{n}" for n, (x, _) in PLACES.items()]
    path = tmp / "positions.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_captures_and_sheet_become_a_trace_that_replays(tmp_path: Path) -> None:
    captures = bench(tmp_path)
    out = tmp_path / "bench.csv"
    runner = CliRunner()
    args = ["testbed", "trace-from-capture", *map(str, captures.values()), "--positions", str(sheet(tmp_path))]
    result = runner.invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 adverts from IDs no capture broadcast" in result.output

    trace = parse_trace(out.read_text())
    heard = [r for r in trace.rows if r.rssi is not None]
    per_pair = {
        (rx, tx): [r for r in heard if (r.receiver, r.transmitter) == (rx, tx)] for rx in PLACES for tx in PLACES
    }
    for (rx, tx), rows in per_pair.items():
        if rx == tx:
            assert rows == []
            continue
        assert len(rows) == MINUTES * 60 // 10  # every report, across the rotations, named after its sender
        expected_distance = abs(PLACES[rx][0] - PLACES[tx][0])
        assert {r.distance_m for r in rows} == {round(expected_distance, 2)}
        assert {r.rssi for r in rows} == {min(PLACES[rx][1], PLACES[tx][1])}
        assert {(r.receiver_model, r.transmitter_model) for r in rows} == {(f"dongle-{rx}", f"dongle-{tx}")}
        # the extended report carries the TX power; a GAEN advert's own is encrypted, so legacy rows have none
        assert {r.tx_power for r in rows} == ({TX_POWER} if rx == "ben" else {None})
    truth_only = [r for r in trace.rows if r.rssi is None]
    assert len(truth_only) == 3 * MINUTES  # one per minute per pair over the half hour

    result = runner.invoke(cli, ["testbed", "replay", str(out), "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    decided = {
        (p["receiver"], p["transmitter"]): (p["true_contact"], p["notified"])
        for p in json.loads((tmp_path / "report" / "replay.json").read_text())["pairs"]
    }
    assert decided[("ana", "ben")] == decided[("ben", "ana")] == (True, True)
    assert all(not contact and not notified for pair, (contact, notified) in decided.items() if "cat" in pair)


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    not_snoop = tmp_path / "ana.snoop"
    not_snoop.write_bytes(b"not a capture at all")
    good = sheet(tmp_path)
    bad_sheet = tmp_path / "bad.csv"
    bad_sheet.write_text("device,x,y\nana,one,0\n")
    runner = CliRunner()
    for capture, positions, message in (
        (not_snoop, good, "not a BTSnoop capture"),
        (not_snoop, bad_sheet, "positions line 2: x, y and z must be numbers"),
    ):
        result = runner.invoke(
            cli,
            [
                "testbed",
                "trace-from-capture",
                str(capture),
                "--positions",
                str(positions),
                "--out",
                str(tmp_path / "t.csv"),
            ],
        )
        assert result.exit_code == 1
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_the_guides_positions_sheet_reads_as_documented() -> None:
    """hw/README.md's example sheet: hci1 moves from 1 m to 4 m at noon (ISO 8601 times, open ends)."""
    text = (Path(__file__).resolve().parents[2] / "hw" / "README.md").read_text()
    example = text[text.index("device,x,y,z,from,until,model") :].split("```")[0]
    placements = parse_positions(example)
    noon = datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()
    assert [(p.device, p.x, p.model) for p in placements] == [
        ("hci0", 0, "CSR8510"),
        ("hci1", 1.0, "UB500"),
        ("hci1", 4.0, "UB500"),
    ]
    assert placements[1].end == placements[2].start == noon
    assert placements[0].start == -math.inf and placements[0].end == math.inf
