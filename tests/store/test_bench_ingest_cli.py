import json
import subprocess
import sys


def test_bench_ingest_reports_rates_and_size() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "bench", "ingest", "--sightings", "20000", "--peers", "50", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["sightings"] == 20000 and r["sightings_per_s"] > 0 and r["baseline_rows_per_s"] > 0
    # 50 peers for 100 s of traffic: every peer has a row per 60-s window it was heard in, no more.
    assert 50 <= r["rows_written"] <= 50 * 3 * 10
    assert r["bytes_per_million"] > 0
