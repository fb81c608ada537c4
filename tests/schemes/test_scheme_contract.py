"""One contract, three schemes: what the advertiser and every receiver rely on, whatever the scheme.

As the DP-3T reference implementation runs one suite over both of its designs, this runs one over DP-3T,
GAEN and EBID through the :class:`~agent.schemes.base.Scheme` protocol alone (``broadcast_at``) and the
shared decoder:

- inside the key's validity exactly one ID is live at any time: the broadcast windows tile the validity
  with no gap and no overlap, and each ID lives in one window only; outside the validity there is none;
- the ID changes exactly at the scheme's period boundary (15-minute DP-3T epochs, 10-minute GAEN intervals,
  the EBID batch's period) and nowhere in between;
- the advert is exactly the 31-byte legacy payload and round-trips through the decoder to the same scheme
  and the same ID; no scheme puts the sender's TX power on air in clear (DP-3T and GAEN encrypt it in the
  metadata, readable only with the key; EBID does not carry it at all, the backend has it from
  registration: a constant in clear would link a device's successive IDs).

The periods are spelled out here from the specifications, not read from the schemes, so a scheme that
changes its own period fails rather than agreeing with itself.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from agent.clock import DAY, day_of, start_of_day
from agent.schemes import dp3t, ebid, gaen
from agent.schemes.base import (
    LEGACY_ADV_MAX,
    SERVICE_DATA_LEN,
    SERVICE_UUID16,
    Broadcast,
    DecodedAdvert,
    Scheme,
    SchemeName,
    advertising_data,
    uuid128,
)
from agent.schemes.decoder import decode_advertising_data, decode_service_data

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC: on no period boundary, under two hours before a UTC midnight
TX_POWER = -8
LAST_MOMENT = 0.001  # how far before a boundary "the last moment of a period" is


@dataclass(frozen=True)
class Case:
    """A scheme with its key material, and what the contract expects of it.

    ``valid_until`` None means the key never runs out (the DP-3T chain goes forward for ever); the walk
    then stops at ``walk_until``. ``read_tx_power`` is what a receiver that holds the sender's key (once it
    is published) reads as the sender's TX power from a decoded advert heard at ``t``; None when the
    scheme does not carry it (EBID).
    """

    scheme: Scheme
    name: SchemeName
    period_seconds: int
    valid_from: int
    valid_until: int | None
    walk_until: int
    read_tx_power: Callable[[DecodedAdvert, float], int | None] | None


def dp3t_case() -> Case:
    keys = dp3t.new_key_state(T0, random_bytes=random.Random(3).randbytes)
    start = start_of_day(keys.start_day)

    def read(advert: DecodedAdvert, t: float) -> int | None:
        sk = keys.sk_for_day(day_of(t))
        return dp3t.metadata_tx_power(dp3t.decrypt_metadata(sk, advert.ephemeral_id, advert.metadata))

    return Case(dp3t.Dp3tScheme(keys), SchemeName.DP3T, 15 * 60, start, None, start + 2 * DAY, read)


def gaen_case() -> Case:
    tek = gaen.new_tek(T0, random_bytes=random.Random(7).randbytes)
    start = tek.rolling_start_interval_number * 10 * 60

    def read(advert: DecodedAdvert, t: float) -> int | None:
        plain = gaen.decrypt_metadata(gaen.aemk(tek.key), advert.ephemeral_id, advert.metadata)
        return gaen.parse_metadata(plain).tx_power

    end = start + 144 * 10 * 60
    return Case(gaen.GaenScheme((tek,)), SchemeName.GAEN, 10 * 60, start, end, end, read)


def ebid_case() -> Case:
    first = T0 // 900
    entries = tuple(ebid.EbidEntry(p, os.urandom(16), p % 256) for p in range(first, first + 10))
    scheme = ebid.EbidScheme(ebid.EbidBatch(900, entries))
    start, end = first * 900, (first + 10) * 900
    return Case(scheme, SchemeName.EBID, 900, start, end, end, None)


@pytest.fixture(params=[dp3t_case, gaen_case, ebid_case], ids=["dp3t", "gaen", "ebid"])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param()


def live(case: Case, t: float, tx_power: int = TX_POWER) -> Broadcast:
    broadcast = case.scheme.broadcast_at(t, tx_power)
    assert broadcast is not None, f"no ID live at {t} inside the key's validity"
    return broadcast


def period_starts(case: Case) -> Iterator[int]:
    return iter(range(case.valid_from, case.walk_until, case.period_seconds))


def test_the_scheme_names_itself_and_its_broadcasts(case: Case) -> None:
    assert case.scheme.name is case.name
    assert live(case, T0).scheme is case.name
    assert live(case, T0).service_uuid16 == SERVICE_UUID16[case.name]


def test_one_id_at_a_time_tiles_the_validity(case: Case) -> None:
    seen: dict[bytes, int] = {}
    previous_end = case.valid_from
    for start in period_starts(case):
        broadcast = live(case, start)
        assert (broadcast.valid_from, broadcast.valid_until) == (start, start + case.period_seconds)
        assert broadcast.valid_from == previous_end, "a gap or an overlap between two IDs"
        previous_end = broadcast.valid_until
        assert broadcast.ephemeral_id not in seen, f"the ID of {seen.get(broadcast.ephemeral_id)} is back at {start}"
        seen[broadcast.ephemeral_id] = start
    assert len(seen) == (case.walk_until - case.valid_from) // case.period_seconds


def test_no_id_outside_the_validity(case: Case) -> None:
    for before in (case.valid_from - LAST_MOMENT, case.valid_from - case.period_seconds, case.valid_from - DAY):
        assert case.scheme.broadcast_at(before, TX_POWER) is None
    if case.valid_until is not None:
        for after in (case.valid_until, case.valid_until + case.period_seconds, case.valid_until + DAY):
            assert case.scheme.broadcast_at(after, TX_POWER) is None
        assert case.scheme.broadcast_at(case.valid_until - LAST_MOMENT, TX_POWER) is not None


def test_the_id_changes_exactly_at_each_period_boundary(case: Case) -> None:
    assert case.valid_from % case.period_seconds == 0, "periods are aligned to the unix epoch"
    for start in period_starts(case):
        first = live(case, start).ephemeral_id
        for inside in (start + 1, start + case.period_seconds / 2, start + case.period_seconds - LAST_MOMENT):
            assert live(case, inside).ephemeral_id == first, f"the ID changed at {inside}, inside a period"
        boundary = start + case.period_seconds
        if boundary < case.walk_until:
            assert live(case, boundary).ephemeral_id != first, f"the ID did not change at {boundary}"


@pytest.mark.parametrize("tx_power", [-30, -8, 0, 12])
def test_the_advert_round_trips_through_the_decoder(case: Case, tx_power: int) -> None:
    t = T0 + 17
    broadcast = live(case, t, tx_power)
    payload = advertising_data(broadcast.service_uuid16, broadcast.service_data)
    assert len(payload) == LEGACY_ADV_MAX == 31
    decoded = decode_advertising_data(payload)
    assert isinstance(decoded, DecodedAdvert), decoded
    assert decoded == decode_service_data(uuid128(broadcast.service_uuid16), broadcast.service_data)
    assert decoded.scheme is case.name
    assert decoded.ephemeral_id == broadcast.ephemeral_id
    assert decoded.tx_power is None, "the TX power is never on air in clear"
    if case.read_tx_power is None:
        assert live(case, t, tx_power + 1).service_data == broadcast.service_data, "a TX power went on air"
    else:
        assert case.read_tx_power(decoded, t) == tx_power
    assert live(case, t, tx_power + 1).ephemeral_id == broadcast.ephemeral_id, "the TX power must not change the ID"


def test_every_advert_of_the_validity_is_exactly_31_bytes(case: Case) -> None:
    for start in period_starts(case):
        broadcast = live(case, start)
        assert len(broadcast.service_data) == SERVICE_DATA_LEN
        assert len(advertising_data(broadcast.service_uuid16, broadcast.service_data)) == 31
