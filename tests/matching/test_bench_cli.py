import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("scheme", ["gaen", "dp3t"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_bench_match_finds_every_planted_match(scheme: str, workers: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "bench",
            "match",
            "--scheme",
            scheme,
            "--keys",
            "3000",
            "--sightings",
            "2000",
            "--planted",
            "7",
            "--workers",
            workers,
            "--days-back",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["planted"] == 7
    assert result["found"] == 7
    assert result["keys_per_s"] > 0
    assert result["workers"] == int(workers)
