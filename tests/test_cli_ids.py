"""The diagnostics commands, run as a user runs them (a subprocess), against the published vectors."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads((DATA / "scheme_vectors.json").read_text())["vectors"]


def test_ids_dp3t_prints_96_ephids_in_derivation_order(vectors: dict[str, Any]) -> None:
    v = vectors["dp3t-lowcost-key-chain-and-ephids"]
    out = run("ids", "dp3t", "--sk", v["inputs"]["sk0"], "--days-after", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert len(lines) == 96
    assert lines[:3] == v["expected"]["ephids_of_sk1_unshuffled_first3"]


def test_ids_gaen_prints_144_rpi_aem_pairs(vectors: dict[str, Any]) -> None:
    v = vectors["gaen-rpi-aem-144"]
    out = run(
        "ids",
        "gaen",
        "--tek",
        v["inputs"]["tek"],
        "--start-interval",
        str(v["inputs"]["first_en_interval_number"]),
        "--metadata",
        v["inputs"]["ble_metadata"],
    )
    assert out.returncode == 0, out.stderr
    pairs = [line.split() for line in out.stdout.splitlines()]
    assert pairs == [[e["rpi"], e["aem"]] for e in v["expected"]["advertised"]]


GAEN_AD = "02011a03036ffd1716" + "6ffd" + "22" * 16 + "40080000"


def test_advert_decode_prints_json() -> None:
    # the byte after the version once held the TX power (0xec = -20 dBm); it is reserved and ignored now
    out = run("advert", "decode", "02011a030364fd1716 64fd ab" + "11" * 16 + "01ec00")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "scheme": "ebid",
        "ephemeral_id": "11" * 16,
        "metadata": "ab",
        "tx_power": None,
        "ecc": 0xAB,
        "version": 1,
    }


def test_the_valid_gaen_advert_alone_decodes() -> None:
    """The prefix the malformed cases extend is itself valid, so they fail only for the trailing bytes."""
    out = run("advert", "decode", GAEN_AD + "0000")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ephemeral_id"] == "22" * 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ids", "dp3t", "--sk", "abc"), "not valid hex"),
        (("ids", "dp3t", "--sk", "00" * 31), "must be 32 bytes, got 31"),
        (("ids", "gaen", "--tek", "00" * 16), "Missing option '--start-interval'"),
        (("ids", "gaen", "--tek", "00" * 17, "--start-interval", "1"), "must be 16 bytes, got 17"),
        (("advert", "decode", "0201"), "runs past the end"),
        (("advert", "decode", "--uuid", "fd6f", "00" * 19), "gaen service data is 19 bytes"),
        (("advert", "decode", "--uuid", "nope", "00"), "is not a 16-bit"),
        # a valid GAEN advert (flags, UUID list, 20 bytes of service data) followed by malformed AD bytes
        (("advert", "decode", GAEN_AD + "05ff01"), "runs past the end"),
        (("advert", "decode", GAEN_AD + "00ff"), "non-zero bytes after the end"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_every_command_has_help() -> None:
    for args in ([], ["ids"], ["ids", "dp3t"], ["ids", "gaen"], ["advert"], ["advert", "decode"]):
        out = run(*args, "--help")
        assert out.returncode == 0 and "Usage:" in out.stdout
