"""PublishedKey holds only keys the matcher can expand: the invariants are enforced on construction."""

from __future__ import annotations

import dataclasses

import pytest

from agent.schemes.published import ENIN_SECONDS, PublishedKey, ReportType


def test_validity_window_in_unix_seconds() -> None:
    key = PublishedKey(key_data=b"\x00" * 16, rolling_start_interval_number=2649866, rolling_period=114)
    assert key.valid_from == 2649866 * 600
    assert key.valid_until - key.valid_from == 114 * ENIN_SECONDS


def test_defaults_describe_a_whole_day_key() -> None:
    key = PublishedKey(key_data=b"\x00" * 32, rolling_start_interval_number=144 * 19000)
    assert (key.rolling_period, key.transmission_risk_level, key.report_type, key.days_since_onset) == (
        144,
        0,
        ReportType.UNKNOWN,
        None,
    )


def test_is_a_frozen_hashable_value() -> None:
    key = PublishedKey(key_data=b"\x00" * 16, rolling_start_interval_number=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.rolling_period = 3  # type: ignore[misc]
    assert len({key, PublishedKey(key_data=b"\x00" * 16, rolling_start_interval_number=1)}) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key_data": b"\x00" * 15}, "key_data is 15 bytes"),
        ({"key_data": bytearray(16)}, "key_data"),
        ({"rolling_start_interval_number": -1}, "rolling_start_interval_number -1 out of range"),
        ({"rolling_period": 0}, "rolling_period 0 not in 1..144"),
        ({"rolling_period": 145}, "rolling_period 145 not in 1..144"),
        ({"rolling_start_interval_number": 2**31 - 10, "rolling_period": 20}, "runs past the last interval"),
        ({"transmission_risk_level": 9}, "transmission_risk_level 9 not in 0..8"),
        ({"report_type": 6}, "report_type 6 unknown"),
        ({"days_since_onset": -15}, "days_since_onset -15 not in -14..14"),
    ],
)
def test_invalid_keys_cannot_be_built(fields: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"key_data": b"\x00" * 16, "rolling_start_interval_number": 2_650_000}
    args.update(fields)
    with pytest.raises(ValueError, match=message):
        PublishedKey(**args)  # type: ignore[arg-type]


def test_error_never_contains_the_key_bytes() -> None:
    secret = bytes(range(65, 80))  # printable, so it would show in a repr
    with pytest.raises(ValueError) as err:
        PublishedKey(key_data=secret, rolling_start_interval_number=1)
    assert secret.decode() not in str(err.value) and secret.hex() not in str(err.value)
