"""The pure pieces the server and the agent share: proof of work, codes, release buckets and wire parsing
(the failure limiter counts in the store: test_server_limits)."""

import hashlib
import os
from collections.abc import Callable

import pytest

from agent.clock import day_of
from agent.protocol import proof_of_work, wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.server import buckets, codes

DAY = 86_400
T0 = 1_700_006_400.0  # a UTC midnight (day 19676)


# ---- proof of work -----------------------------------------------------------------------------------


def test_leading_zero_bits() -> None:
    assert proof_of_work.leading_zero_bits(b"\x00\x00\x80" + bytes(29)) == 16
    assert proof_of_work.leading_zero_bits(b"\x00\x01" + bytes(30)) == 15
    assert proof_of_work.leading_zero_bits(bytes(32)) == 256


@pytest.mark.parametrize("difficulty", [0, 1, 7, 8, 9, 12])
def test_solve_finds_the_first_nonce_that_meets(difficulty: int) -> None:
    challenge = os.urandom(16)
    nonce = proof_of_work.solve(challenge, difficulty)
    digest = hashlib.sha256(challenge + nonce.to_bytes(8, "big")).digest()
    assert proof_of_work.leading_zero_bits(digest) >= difficulty
    assert proof_of_work.meets(challenge, nonce, difficulty)
    assert all(not proof_of_work.meets(challenge, n, difficulty) for n in range(nonce))


def test_meets_refuses_out_of_range_nonces() -> None:
    assert not proof_of_work.meets(b"c" * 16, -1, 0)
    assert not proof_of_work.meets(b"c" * 16, 1 << 64, 0)


def test_solve_reports_progress() -> None:
    seen: list[int] = []
    challenge = b"\x01" * 16
    nonce = proof_of_work.solve(challenge, 16, progress=seen.append)
    assert seen == [16384 * (i + 1) for i in range(nonce // 16384)]


# ---- codes -------------------------------------------------------------------------------------------


def test_codes_are_readable_and_forgiving() -> None:
    code = codes.new_code()
    assert len(code) == 14 and code[4] == code[9] == "-"
    canonical = codes.normalise_code(code)
    assert canonical == code.replace("-", "")
    assert codes.normalise_code(code.lower().replace("-", " ")) == canonical
    assert codes.normalise_code("O0IL-1111-2222") == "001111112222"
    assert codes.normalise_code("ABCD-EFGH") is None
    assert codes.normalise_code("ABCD-EFGH-UUUU") is None  # U is not in the alphabet
    assert len({codes.new_code() for _ in range(200)}) == 200


# ---- release buckets ---------------------------------------------------------------------------------


def test_gaen_key_is_released_after_its_day_and_its_arrival() -> None:
    today = gaen.day_start_enin(gaen.enin(T0 + 10 * 3600))
    yesterday_key = PublishedKey(os.urandom(16), today - 144)
    today_key = PublishedKey(os.urandom(16), today)
    received = T0 + 10 * 3600 + 5  # 10:00:05
    # yesterday's key is dead already: it goes out with the bucket of its arrival (10:00-12:00)
    assert buckets.release_tag_ms(SchemeName.GAEN, yesterday_key, received, 7200) == int(T0 + 12 * 3600) * 1000
    # today's key is live until midnight: the bucket after midnight releases it
    assert buckets.release_tag_ms(SchemeName.GAEN, today_key, received, 7200) == int(T0 + DAY + 7200) * 1000


def test_dp3t_chain_is_released_after_the_day_of_the_upload() -> None:
    key = PublishedKey(os.urandom(32), (day_of(T0) - 3) * 144)
    received = T0 + 3600
    assert buckets.release_tag_ms(SchemeName.DP3T, key, received, 7200) == int(T0 + DAY + 7200) * 1000


def test_current_and_normalised_tags() -> None:
    assert buckets.current_tag_ms(T0 + 7199, 7200) == int(T0) * 1000
    assert buckets.current_tag_ms(T0 + 7200, 7200) == int(T0 + 7200) * 1000
    assert buckets.normalise_tag_ms(int(T0) * 1000 + 12345, 7200) == int(T0) * 1000


# ---- wire --------------------------------------------------------------------------------------------


def _upload(scheme: SchemeName, real: list[PublishedKey], count: int = 5) -> dict:
    return wire.key_upload_body(scheme, real, count, onset_day=19670)


def test_upload_round_trip_drops_fakes() -> None:
    real = [
        PublishedKey(os.urandom(16), 19675 * 144, transmission_risk_level=4),
        PublishedKey(os.urandom(16), 19676 * 144),
    ]
    body = _upload(SchemeName.GAEN, real)
    assert len(body["keys"]) == 5 and sum(k["fake"] for k in body["keys"]) == 3
    parsed = wire.parse_key_upload(body, SchemeName.GAEN, 5)
    assert sorted(parsed.keys, key=lambda k: k.rolling_start_interval_number) == real
    assert parsed.onset_day == 19670


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b["keys"].append(b["keys"][0]), r"too many keys \(6, the maximum is 5\)"),
        (lambda b: b["keys"].pop(), "expected exactly 5 keys"),
        (lambda b: b["keys"][0].update(keyData="!!"), r"keys\[0\].keyData: not valid base64"),
        (lambda b: b["keys"][0].update(keyData=wire.b64(b"x" * 15)), "expected 16 bytes, got 15"),
        (lambda b: b["keys"][0].update(rollingPeriod=145), r"keys\[0\].rollingPeriod: must be between 1 and 144"),
        (lambda b: b["keys"][0].update(rollingStartNumber="1"), "rollingStartNumber: expected an integer"),
        (lambda b: b["keys"][0].update(fake=True), r"keys\[0\].fake: expected an integer"),
        (lambda b: b.update(onset="yesterday"), "body.onset: expected a date"),
        (lambda b: b.update(keys={}), "body.keys: expected a list"),
    ],
)
def test_bad_uploads_name_the_field(mutate: Callable[[dict], object], message: str) -> None:
    body = _upload(SchemeName.GAEN, [PublishedKey(os.urandom(16), 19675 * 144)])
    mutate(body)
    with pytest.raises(wire.WireError, match=message):
        wire.parse_key_upload(body, SchemeName.GAEN, 5)


def test_duplicate_real_keys_are_refused() -> None:
    key = PublishedKey(os.urandom(16), 19675 * 144)
    body = _upload(SchemeName.GAEN, [key, key])
    with pytest.raises(wire.WireError, match="the same key appears twice"):
        wire.parse_key_upload(body, SchemeName.GAEN, 5)


def test_dp3t_keys_must_start_a_day() -> None:
    body = _upload(SchemeName.DP3T, [PublishedKey(os.urandom(32), 19675 * 144)])
    assert wire.parse_key_upload(body, SchemeName.DP3T, 5).keys[0].key_data == wire.unb64(
        next(k for k in body["keys"] if not k["fake"])["keyData"], "k"
    )
    next(k for k in body["keys"] if not k["fake"])["rollingStartNumber"] += 1
    with pytest.raises(wire.WireError, match="a DP-3T key starts a day"):
        wire.parse_key_upload(body, SchemeName.DP3T, 5)


def test_contacts_round_trip_and_errors() -> None:
    contact = wire.ReportedContact(7, os.urandom(16), 1000, 900_000.5, (wire.ScanRecord(900_001.0, 60, 58),))
    body = wire.contacts_body([contact])
    assert wire.parse_contacts(body, 10) == (contact,)
    with pytest.raises(wire.WireError, match=r"too many contacts \(1, the maximum is 0\)"):
        wire.parse_contacts(body, 0)
    body["contacts"][0]["scans"] = []
    with pytest.raises(wire.WireError, match=r"contacts\[0\].scans: expected a non-empty list"):
        wire.parse_contacts(body, 10)
    body = wire.contacts_body([contact])
    body["contacts"][0]["scans"][0]["time"] = float("nan")
    with pytest.raises(wire.WireError, match=r"scans\[0\].time: expected a number"):
        wire.parse_contacts(body, 10)


def test_ebid_batch_round_trip() -> None:
    from agent.schemes.ebid import EbidBatch, EbidEntry

    batch = EbidBatch(900, (EbidEntry(5, os.urandom(16), 3), EbidEntry(6, os.urandom(16), 250)))
    assert wire.parse_ebid_batch(wire.ebid_batch_body(batch)) == batch
