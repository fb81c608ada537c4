from datetime import UTC, datetime
from typing import Any

from agent.clock import day_of
from agent.schemes import dp3t
from agent.schemes.base import DecodedAdvert, SchemeName, advertising_data
from agent.schemes.decoder import decode_advertising_data


def test_key_chain_and_ephids_match_reference_vectors(vectors: dict[str, Any]) -> None:
    v = vectors["dp3t-lowcost-key-chain-and-ephids"]
    sk0 = bytes.fromhex(v["inputs"]["sk0"])
    sk1 = dp3t.next_day_key(sk0)
    assert sk1.hex() == v["expected"]["sk1"]
    assert dp3t.next_day_key(sk1).hex() == v["expected"]["sk2"]
    assert dp3t.advance_key(sk0, 2).hex() == v["expected"]["sk2"]
    ids = dp3t.ephids(sk1)
    assert len(ids) == v["inputs"]["ephids_per_day"] == 96
    assert [e.hex() for e in ids[:3]] == v["expected"]["ephids_of_sk1_unshuffled_first3"]
    assert len(set(ids)) == 96


def test_day_start(vectors: dict[str, Any]) -> None:
    v = vectors["dp3t-lowcost-day-start"]
    t = datetime.fromisoformat(v["inputs"]["time_utc"].replace("Z", "+00:00")).astimezone(UTC).timestamp()
    assert dp3t.day_start(t) == v["expected"]["day_start_unix_seconds"]


def test_secure_shuffle_is_a_stable_keyed_permutation() -> None:
    a = dp3t.secure_shuffle(b"seed-a")
    assert sorted(a) == list(range(96))
    assert a == dp3t.secure_shuffle(b"seed-a")
    assert a != dp3t.secure_shuffle(b"seed-b")
    assert a != list(range(96))


def test_a_day_broadcasts_each_ephid_once_in_shuffled_order() -> None:
    state = dp3t.new_key_state(1_700_000_000)
    scheme = dp3t.Dp3tScheme(state)
    day = day_of(1_700_000_000)
    sent = [scheme.broadcast_at(day * 86400 + e * 900 + 450, tx_power=3) for e in range(96)]
    assert all(b is not None for b in sent)
    ids = [b.ephemeral_id for b in sent if b]
    expected = dp3t.ephids(state.sk_for_day(day))
    assert sorted(ids) == sorted(expected)
    assert ids != expected  # shuffled, not derivation order
    first = sent[0]
    assert first is not None
    assert (first.valid_from, first.valid_until) == (day * 86400, day * 86400 + 900)


def test_next_day_uses_the_next_key_in_the_chain() -> None:
    state = dp3t.new_key_state(1_700_000_000)
    day = day_of(1_700_000_000)
    b = dp3t.Dp3tScheme(state).broadcast_at((day + 3) * 86400 + 10, 0)
    assert b is not None
    assert b.ephemeral_id in dp3t.ephids(dp3t.advance_key(state.start_sk, 3))
    assert dp3t.Dp3tScheme(state).broadcast_at((day - 1) * 86400, 0) is None


def test_rebase_forgets_old_keys_but_keeps_the_chain() -> None:
    state = dp3t.new_key_state(1_700_000_000)
    later = state.rebased(state.start_day + 5)
    assert later.start_sk == dp3t.advance_key(state.start_sk, 5)
    assert later.sk_for_day(state.start_day + 7) == state.sk_for_day(state.start_day + 7)


def test_encrypted_metadata_hides_tx_power_and_decrypts_with_the_day_key() -> None:
    state = dp3t.new_key_state(1_700_000_000)
    b = dp3t.Dp3tScheme(state).broadcast_at(1_700_000_000, tx_power=-12)
    assert b is not None
    enc = b.service_data[16:]
    assert enc != dp3t.metadata(-12)
    sk = state.sk_for_day(day_of(1_700_000_000))
    assert dp3t.metadata_tx_power(dp3t.decrypt_metadata(sk, b.ephemeral_id, enc)) == -12


def test_advert_round_trip_31_bytes() -> None:
    b = dp3t.Dp3tScheme(dp3t.new_key_state(1_700_000_000)).broadcast_at(1_700_000_000, 0)
    assert b is not None
    ad = advertising_data(b.service_uuid16, b.service_data)
    assert len(ad) == 31
    assert ad[5:7] == bytes.fromhex("68fd")
    decoded = decode_advertising_data(ad)
    assert isinstance(decoded, DecodedAdvert)
    assert decoded.scheme is SchemeName.DP3T
    assert decoded.ephemeral_id == b.ephemeral_id
    assert decoded.metadata == b.service_data[16:]
