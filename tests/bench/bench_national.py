"""The device against national-size lists: a cold 14-day pass, a daily delta, peak RSS, and the matcher's
speed per core as a ratio to the native floor (floor.c), all measured in this run.

Run: python tests/bench/bench_national.py --floor-source PATH/TO/floor.c [--quick]

Ratio: floor.c (built here with gcc -O2 and libcrypto) and the Python matcher run back to back, one
after the other ``--repeats`` times over the same numbers of keys and heard IDs, and the medians are
compared, so a loaded machine slows both alike; the same on CPU time (the Python side's process time,
the floor's rate scaled by the share of its wall time it had a core) is less noisy still.
Targets: GAEN and DP-3T >= 0.5 x the native full match, per core.

National: 14 signed daily export files holding ``--cold-keys`` GAEN keys between them (1.7 M, a national
14-day window at its peak) and one ``--delta-keys`` file (100 k, a day's new keys), against 14 days of
sightings of ``--peers`` devices (50, each heard ``--hours`` a day, one window a minute) in a real store.
Each pass runs in a fresh interpreter through the daemon's own path (verify_export_stream, then
process_export over ``--workers`` processes) and reports its wall time and peak RSS (the parent's, and
the largest worker's). A few peers' keys are planted in the lists, so a fast but wrong matcher shows up as
matched != planted. Targets: cold pass <= 12 s, daily delta <= 1 s, peak RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from agent.bench.match import synthesize
from agent.exposure import ExportRun, HeardIds, process_export, processed_before
from agent.matching import SightingIndex, match_dp3t, match_gaen
from agent.protocol.export import EXPORT_HEADER, SignatureInfo, sign_export_bin, verify_export_stream, zip_export
from agent.protocol.proto import gaen_export as pb
from agent.risk import RiskSettings
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import KeyTable
from agent.sightings import SightingWindow
from agent.signing_keys import load_public_key, public_key_pem
from agent.store import Store

TODAY = 20_400  # a fixed UTC day number, as in bench_match
NOW = (TODAY + 1) * 86400 - 1800  # late on TODAY, so every key of the 14 days is in the past
DAYS = 14
INFO = SignatureInfo(verification_key_id="262", verification_key_version="v1")


# ------------------------------------------------------------------------------------ ratio to floor.c


def build_floor(source: Path, workdir: Path) -> Path:
    binary = workdir / "floor"
    subprocess.run(
        ["gcc", "-O2", "-o", str(binary), str(source), "-lcrypto", "-Wno-deprecated-declarations"], check=True
    )
    return binary


def floor_rates(binary: Path, keys: int, heard: int) -> dict[str, float]:
    """Keys per second of floor.c's full matches, wall clock; and ``cpu_share``: the share of its wall
    time the floor had a core (on a loaded machine < 1), to put both sides on CPU time."""
    before, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run([str(binary), str(keys), str(heard), "1"], check=True, capture_output=True, text=True)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - w0
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    rates = {"cpu_share": cpu / wall}
    for scheme in ("gaen", "dp3t"):
        m = re.search(rf"^{scheme}_full_native_match\S*\s+median\s+[\d.]+ ns/key\s+(\d+) keys/s", out.stdout, re.M)
        if not m:
            raise SystemExit(f"could not read {scheme}_full_native_match from the floor's output:\n{out.stdout}")
        rates[scheme] = float(m.group(1))
    return rates


def python_rate(scheme: SchemeName, table: KeyTable, index: SightingIndex) -> tuple[float, float]:
    """Keys (key-days for DP-3T, all of today) per second, wall clock and CPU, on one core."""
    w0, c0 = time.perf_counter(), time.process_time()
    if scheme is SchemeName.GAEN:
        match_gaen(table, index)
    else:
        match_dp3t(table, index, today=TODAY)
    w1, c1 = time.perf_counter(), time.process_time()
    return len(table) / (w1 - w0), len(table) / (c1 - c0)


def ratio_section(binary: Path, keys: int, heard: int, repeats: int) -> dict[str, object]:
    tables, indexes = {}, {}
    for scheme in (SchemeName.GAEN, SchemeName.DP3T):
        published, windows = synthesize(scheme, keys, heard, planted=0, seed=3)
        length = gaen.TEK_LEN if scheme is SchemeName.GAEN else 32
        tables[scheme], indexes[scheme] = KeyTable.of(published, length), SightingIndex(windows)
    runs: dict[str, list[tuple[float, float, float, float]]] = {"gaen": [], "dp3t": []}
    for _ in range(repeats):
        native = floor_rates(binary, keys, heard)
        for scheme in (SchemeName.GAEN, SchemeName.DP3T):
            wall, cpu = python_rate(scheme, tables[scheme], indexes[scheme])
            rate = native[scheme.value]
            runs[scheme.value].append((rate, wall, cpu, rate / native["cpu_share"]))
    report: dict[str, object] = {"keys": keys, "heard_ids": heard, "repeats": repeats}
    for scheme, rows in runs.items():
        native_med = statistics.median(r[0] for r in rows)
        wall_med = statistics.median(r[1] for r in rows)
        report[scheme] = {
            "native_keys_per_s_median": round(native_med),
            "python_keys_per_s_median": round(wall_med),
            "python_cpu_keys_per_s_median": round(statistics.median(r[2] for r in rows)),
            "native_cpu_keys_per_s_median": round(statistics.median(r[3] for r in rows)),
            "ratio_of_medians": round(wall_med / native_med, 3),
            "ratio_per_repeat": [round(r[1] / r[0], 3) for r in rows],
            "cpu_ratio_of_medians": round(
                statistics.median(r[2] for r in rows) / statistics.median(r[3] for r in rows), 3
            ),
            "target_ratio": 0.5,
        }
    return report


# ---------------------------------------------------------------------------------------- national lists


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key_entry(tek: bytes, start: int) -> bytes:
    """One keys-field entry as every national server writes it: key, risk level, start, period, type."""
    body = b"\x0a\x10" + tek + b"\x10\x05\x18" + _varint(start) + b"\x20\x90\x01\x28\x01"
    return b"\x3a" + bytes([len(body)]) + body


def write_export(path: Path, entries: list[bytes], signer: ec.EllipticCurvePrivateKey) -> None:
    head = pb.TemporaryExposureKeyExport(
        start_timestamp=NOW - 86400, end_timestamp=NOW - 3600, region="XX", batch_num=1, batch_size=1
    )
    head.signature_infos.append(
        pb.SignatureInfo(
            verification_key_id=INFO.verification_key_id,
            verification_key_version=INFO.verification_key_version,
            signature_algorithm=INFO.signature_algorithm,
        )
    )
    export_bin = EXPORT_HEADER + head.SerializeToString() + b"".join(entries)
    sigs = pb.TEKSignatureList()
    sigs.signatures.append(
        pb.TEKSignature(
            signature_info=head.signature_infos[0],
            batch_num=1,
            batch_size=1,
            signature=sign_export_bin(export_bin, signer),
        )
    )
    path.write_bytes(zip_export(export_bin, sigs.SerializeToString()))


def generate(workdir: Path, cold_keys: int, delta_keys: int, peers: int, hours: int, seed: int) -> dict[str, object]:
    """The lists, the signer's key and a store of sightings; returns what a correct matcher must find."""
    rng = random.Random(seed)
    first_day = TODAY - DAYS + 1
    teks = {(p, d): rng.randbytes(16) for p in range(peers) for d in range(first_day, TODAY + 1)}
    windows = []
    day_start_interval = 9 * 6  # heard from 09:00
    for (_, day), tek in teks.items():
        rpik, aemk = gaen.rpik(tek), gaen.aemk(tek)
        for i in range(hours * 6):
            interval = day * gaen.ROLLING_PERIOD + day_start_interval + i
            rpi = gaen.rpi(rpik, interval)
            aem = gaen.encrypt_metadata(aemk, rpi, gaen.metadata(-8))
            for minute in range(10):
                t = interval * 600 + minute * 60
                windows.append(SightingWindow(SchemeName.GAEN, rpi, t, 4, -70, -60, -260, None, aem, t + 5.0, t + 50.0))
    store = Store.open(workdir / "state")
    store.add_windows(windows)
    store.close()
    planted_cold = [teks[(p, TODAY - 2 * p)] for p in range(3)] + [teks[(p, TODAY - 1)] for p in range(3, 6)]
    planted_delta = [teks[(p, TODAY)] for p in range(6, 8)]
    signer = ec.generate_private_key(ec.SECP256R1())
    (workdir / "signer.pem").write_text(public_key_pem(signer.public_key()))
    per_file = cold_keys // DAYS
    for f in range(DAYS):
        entries = [
            _key_entry(rng.randbytes(16), (first_day + rng.randrange(DAYS)) * gaen.ROLLING_PERIOD)
            for _ in range(per_file - (1 if f < len(planted_cold) else 0))
        ]
        if f < len(planted_cold):
            tek = planted_cold[f]
            day = next(d for (p, d), t in teks.items() if t == tek)
            entries.insert(rng.randrange(len(entries) + 1), _key_entry(tek, day * gaen.ROLLING_PERIOD))
        write_export(workdir / f"cold-{f:02d}.zip", entries, signer)
    entries = [
        _key_entry(rng.randbytes(16), (first_day + rng.randrange(DAYS)) * gaen.ROLLING_PERIOD)
        for _ in range(delta_keys - len(planted_delta))
    ]
    for tek in planted_delta:
        entries.insert(rng.randrange(len(entries) + 1), _key_entry(tek, TODAY * gaen.ROLLING_PERIOD))
    write_export(workdir / "delta.zip", entries, signer)
    return {
        "windows": len(windows),
        "heard_ids": len(teks) * hours * 6,
        "planted_cold": len(planted_cold),
        "planted_delta": len(planted_delta),
        "cold_file_mb": round(sum(p.stat().st_size for p in workdir.glob("cold-*.zip")) / 2**20, 1),
        "delta_file_mb": round((workdir / "delta.zip").stat().st_size / 2**20, 1),
    }


def run_pass(state: Path, files: list[Path], public_key: Path, workers: int, start_method: str) -> dict[str, object]:
    """One pass as the daemon runs it; called in a fresh interpreter (``--pass``) so RSS is its own."""
    key = load_public_key(public_key)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    store = Store.open(state)
    matched = keys = skipped = 0
    verify_s = 0.0
    heard = HeardIds(store, SchemeName.GAEN, NOW, 14)  # as one sync does: read once for all its files
    try:
        for path in files:
            with path.open("rb") as source:
                if processed_before(store, source):  # as the sync does: known by export.sig, not read
                    skipped += 1
                    continue
                v0 = time.perf_counter()
                export = verify_export_stream(source, {INFO.verification_key_id: key}, now=NOW)
                verify_s += time.perf_counter() - v0
                run = ExportRun(
                    SchemeName.GAEN,
                    path.name,
                    NOW,
                    RiskSettings(),
                    0.0,
                    workers=workers,
                    start_method=start_method,  # type: ignore[arg-type]
                )
                outcome = process_export(store, export, run, heard=heard)
            matched += outcome.matched_keys
            keys += outcome.keys
            skipped += outcome.already_processed
    finally:
        store.close()
    elapsed, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return {
        "files": len(files),
        "keys": keys,
        "matched_keys": matched,
        "files_already_processed": skipped,
        "seconds": round(elapsed, 3),
        "cpu_seconds_all_processes": round(cpu, 3),
        "verify_pass_seconds": round(verify_s, 3),
        "keys_per_s": round(keys / elapsed),
        "peak_rss_mb_parent": _vm_hwm_mb(),
        "peak_rss_mb_largest_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _vm_hwm_mb() -> float:
    """This process's peak RSS since its exec (ru_maxrss would carry over the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def in_fresh_interpreter(state: Path, files: list[Path], public_key: Path, workers: int, method: str) -> dict:
    cmd = [sys.executable, __file__, "--pass", str(state), str(public_key), str(workers), method]
    out = subprocess.run(cmd + [str(f) for f in files], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def national_section(workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    g0 = time.perf_counter()
    facts = generate(workdir, args.cold_keys, args.delta_keys, args.peers, args.hours, seed=5)
    facts["generate_seconds"] = round(time.perf_counter() - g0, 1)
    state, pem = workdir / "state", workdir / "signer.pem"
    cold_files = sorted(workdir.glob("cold-*.zip"))
    spawn_state = workdir / "state-spawn"
    cold = in_fresh_interpreter(state, cold_files, pem, args.workers, "fork")
    shutil.copytree(state, spawn_state)
    single_state = workdir / "state-single"
    shutil.copytree(state, single_state)
    delta = in_fresh_interpreter(state, [workdir / "delta.zip"], pem, args.workers, "fork")
    delta_spawn = in_fresh_interpreter(spawn_state, [workdir / "delta.zip"], pem, args.workers, "spawn")
    delta_single = in_fresh_interpreter(single_state, [workdir / "delta.zip"], pem, 1, "fork")
    again = in_fresh_interpreter(state, [*cold_files, workdir / "delta.zip"], pem, args.workers, "fork")
    return {
        "setup": facts,
        "cold_pass": {**cold, "target_seconds": 12, "planted": facts["planted_cold"]},
        "daily_delta": {**delta, "target_seconds": 1, "planted": facts["planted_delta"]},
        "daily_delta_spawn_rebuilding_index": delta_spawn,
        "daily_delta_one_process": delta_single,
        "all_files_again_remembered": again,
        "target_peak_rss_mb": 150,
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor-source", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ratio-keys", type=int, default=100_000)
    parser.add_argument("--ratio-heard", type=int, default=100_000)
    parser.add_argument("--cold-keys", type=int, default=1_700_000)
    parser.add_argument("--delta-keys", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--hours", type=int, default=8)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--quick", action="store_true", help="a tenth of every size, for a smoke run")
    parser.add_argument("--skip-national", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.ratio_keys, args.ratio_heard = args.ratio_keys // 10, args.ratio_heard // 10
        args.cold_keys, args.delta_keys, args.repeats = args.cold_keys // 10, args.delta_keys // 10, 3
    report: dict[str, object] = {"cpus": os.cpu_count(), "loadavg_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="bench-national-") as tmp:
        workdir = Path(tmp)
        binary = build_floor(args.floor_source, workdir)
        report["ratio_per_core"] = ratio_section(binary, args.ratio_keys, args.ratio_heard, args.repeats)
        report["loadavg_after_ratio"] = load_average()
        if not args.skip_national:
            report["national"] = national_section(workdir, args)
    report["loadavg_after"] = load_average()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--pass":
        state, pem, workers, method, *files = sys.argv[2:]
        print(json.dumps(run_pass(Path(state), [Path(f) for f in files], Path(pem), int(workers), method)))
    else:
        main()
