"""The export limits come from the national figures: a file may hold a national 14-day window (1.7 M keys
at the peak) even as DP-3T day keys, whose largest entry is what the limits are computed from; a 600 k-key
DP-3T daily file (over 20 MB zipped, past the old 16 MiB limit) is verified and read in full."""

import os
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import TEST_ENIN, TEST_INFO, TEST_NOW, key_entries, signed_from_entries

from agent.protocol.export import DEFAULT_LIMITS, SignatureInfo, encode_export_bin, verify_export_stream
from agent.protocol.export_format import LARGEST_KEY_ENTRY_BYTES, NATIONAL_KEYS
from agent.schemes.published import DP3T_KEY_LEN, MAX_INTERVAL_NUMBER, MAX_ROLLING_PERIOD, PublishedKey, ReportType

DAILY_KEYS = 600_000


def _encoded_size(keys: list[PublishedKey]) -> int:
    info = SignatureInfo("228", "v1")
    return len(encode_export_bin(keys, start=0, end=1, region="XX", batch_num=1, batch_size=1, signature_infos=[info]))


def test_the_largest_entry_the_limits_assume_is_the_largest_a_key_encodes_to() -> None:
    largest = PublishedKey(
        b"\xff" * DP3T_KEY_LEN,
        MAX_INTERVAL_NUMBER - MAX_ROLLING_PERIOD,
        MAX_ROLLING_PERIOD,
        transmission_risk_level=8,
        report_type=ReportType.REVOKED,
        days_since_onset=-14,
    )
    assert _encoded_size([largest]) - _encoded_size([]) == LARGEST_KEY_ENTRY_BYTES
    assert NATIONAL_KEYS >= 1_700_000 and DEFAULT_LIMITS.max_keys == NATIONAL_KEYS
    assert DEFAULT_LIMITS.max_export_bin_bytes >= NATIONAL_KEYS * LARGEST_KEY_ENTRY_BYTES
    assert DEFAULT_LIMITS.max_archive_bytes >= DEFAULT_LIMITS.max_export_bin_bytes  # random keys do not deflate


def test_a_national_daily_dp3t_file_is_verified_and_read_in_full(
    tmp_path: Path, signer: ec.EllipticCurvePrivateKey
) -> None:
    template = np.frombuffer(key_entries([PublishedKey(bytes(32), TEST_ENIN, 144, 5, 1, 3)]), np.uint8)
    rows = np.tile(template, (DAILY_KEYS, 1))
    key_at = 4  # entry tag, entry length, key tag, key length
    rows[:, key_at : key_at + DP3T_KEY_LEN] = np.frombuffer(os.urandom(DAILY_KEYS * DP3T_KEY_LEN), np.uint8).reshape(
        DAILY_KEYS, DP3T_KEY_LEN
    )
    path = tmp_path / "daily.zip"
    path.write_bytes(signed_from_entries(rows.tobytes(), signer))
    assert path.stat().st_size > 20 * 10**6 > 16 * 2**20  # what the old 16 MiB limit refused
    with path.open("rb") as source:
        export = verify_export_stream(
            source, {TEST_INFO.verification_key_id: signer.public_key()}, now=TEST_NOW, key_length=DP3T_KEY_LEN
        )
        assert export.summary.key_count == DAILY_KEYS
        read = b"".join(table.key_data for table in export.tables(keys_per_chunk=50_000))
    assert read == rows[:, key_at : key_at + DP3T_KEY_LEN].tobytes()
