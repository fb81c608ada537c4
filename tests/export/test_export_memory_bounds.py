"""Size and count limits apply before the bytes they limit are read or parsed: ``proxitrace match`` stats a
file before reading it, and a signed export's key count is checked before its protobuf is parsed. Each is
measured as the peak RSS of the real CLI (a subprocess whose only child it is)."""

import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import TEST_ENIN, export_message, zip_signed

from agent.protocol.export import DEFAULT_LIMITS, EXPORT_HEADER
from agent.signing_keys import public_key_pem

RSS_LIMIT_KIB = 200 * 1024
_MEASURE = (
    "import json, resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(json.dumps([r.returncode, r.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
)


def match_peak_rss(tmp: Path, list_file: Path, public_key: Path) -> tuple[int, str, int]:
    """``proxitrace match`` run under a fresh Python whose only child it is: (exit code, stderr, peak RSS KiB)."""
    command = [
        sys.executable,
        "-c",
        _MEASURE,
        sys.executable,
        "-m",
        "agent",
        "--state-dir",
        str(tmp / "state"),
        "match",
        "--list",
        str(list_file),
        "--public-key",
        str(public_key),
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    code, stderr, rss = json.loads(out.stdout)
    return code, stderr, rss


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_match_refuses_a_huge_file_before_reading_it(tmp_path: Path) -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "key.pem"
    key_file.write_text(public_key_pem(signer.public_key()))
    huge = tmp_path / "huge.zip"
    with huge.open("wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: costs no disk
    code, stderr, rss = match_peak_rss(tmp_path, huge, key_file)
    assert code == 1 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert rss < RSS_LIMIT_KIB, f"peak RSS {rss} KiB"
    assert f"oversized archive: {1 << 30} bytes, limit {DEFAULT_LIMITS.max_archive_bytes}" in stderr


def test_a_signed_export_with_too_many_keys_is_refused_before_parsing(tmp_path: Path) -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "key.pem"
    key_file.write_text(public_key_pem(signer.public_key()))
    head = export_message(keys=[]).SerializeToString()
    tail = b"\x10" + _varint(TEST_ENIN - 144) + b"\x18" + _varint(144)
    count = DEFAULT_LIMITS.max_keys + 1
    records = b"".join(
        b"\x3a" + _varint(18 + len(tail)) + b"\x0a\x10" + i.to_bytes(16, "big") + tail for i in range(count)
    )
    export_bin = EXPORT_HEADER + head + records
    assert 25 << 20 < len(export_bin) <= DEFAULT_LIMITS.max_export_bin_bytes  # ~30 MB of validly framed keys
    signed = tmp_path / "many.zip"
    signed.write_bytes(zip_signed(export_bin, signer))
    assert signed.stat().st_size <= DEFAULT_LIMITS.max_archive_bytes
    code, stderr, rss = match_peak_rss(tmp_path, signed, key_file)
    assert code == 1 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert rss < RSS_LIMIT_KIB, f"peak RSS {rss} KiB"
    assert f"too many keys: {count}, limit {DEFAULT_LIMITS.max_keys}" in stderr
