import os

import pytest

from agent.matching import SightingIndex, match_dp3t, match_gaen
from agent.schemes import dp3t, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sightings import SightingWindow

DAY = 20_000  # a UTC day number (2024-10-04)
START = DAY * 144


def window(scheme: SchemeName, ephid: bytes, t: float, metadata: bytes = b"") -> SightingWindow:
    start = int(t) - int(t) % 60
    return SightingWindow(scheme, ephid, start, 4, -70, -60, -260, None, metadata, t, t + 30)


def noise(scheme: SchemeName, n: int) -> list[SightingWindow]:
    return [window(scheme, os.urandom(16), DAY * 86400 + i * 7) for i in range(n)]


@pytest.mark.parametrize("native", [True, False])
def test_gaen_finds_planted_keys_with_tx_power(native: bool) -> None:
    keys = [PublishedKey(os.urandom(16), START, transmission_risk_level=i % 8) for i in range(300)]
    planted = {5: 10, 120: 143, 299: 0}  # key index -> interval offset heard
    windows = noise(SchemeName.GAEN, 2000)
    for k, j in planted.items():
        tek = keys[k].key_data
        rpi = gaen.rpi(gaen.rpik(tek), START + j)
        aem = gaen.encrypt_metadata(gaen.aemk(tek), rpi, gaen.metadata(-9))
        windows.append(window(SchemeName.GAEN, rpi, (START + j) * 600 + 100, aem))
    matches = match_gaen(keys, SightingIndex(windows), native=native)
    assert {keys.index(m.key) for m in matches} == set(planted)
    for m in matches:
        assert m.scheme is SchemeName.GAEN
        assert len(m.windows) == 1
        assert m.tx_power == -9


def test_native_and_fallback_aes_agree_on_every_candidate() -> None:
    keys = [PublishedKey(os.urandom(16), START + 144 * (i % 3)) for i in range(50)]
    windows = [
        window(SchemeName.GAEN, gaen.rpi(gaen.rpik(k.key_data), interval), interval * 600)
        for k in keys
        for interval in (k.rolling_start_interval_number, k.rolling_start_interval_number + 77)
    ]
    index = SightingIndex(windows)
    a = match_gaen(keys, index, native=True)
    b = match_gaen(keys, index, native=False)
    assert len(a) == 50
    assert sorted((m.key.key_data, len(m.windows)) for m in a) == sorted((m.key.key_data, len(m.windows)) for m in b)


def test_gaen_time_consistency_and_replay() -> None:
    tek = os.urandom(16)
    key = PublishedKey(tek, START)
    rpi = gaen.rpi(gaen.rpik(tek), START + 50)
    valid_at = (START + 50) * 600
    cases = {
        "inside": (valid_at + 300, True),
        "drift +2h": (valid_at + 600 + 7000, True),
        "drift -2h": (valid_at - 7000, True),
        "3 h late": (valid_at + 600 + 3 * 3600, False),
        "replayed two days after publication": (valid_at + 2 * 86400, False),
    }
    for name, (t, expected) in cases.items():
        found = match_gaen([key], SightingIndex([window(SchemeName.GAEN, rpi, t)]))
        assert bool(found) is expected, name


def test_gaen_ignores_malformed_keys_and_empty_index() -> None:
    good = PublishedKey(os.urandom(16), START)
    rpi = gaen.rpi(gaen.rpik(good.key_data), START)
    index = SightingIndex([window(SchemeName.GAEN, rpi, START * 600)])
    dp3t_key = PublishedKey(os.urandom(32), START)  # a DP-3T day key handed to the GAEN matcher
    assert [m.key for m in match_gaen([dp3t_key, good], index)] == [good]
    with pytest.raises(ValueError, match="key_data is 15 bytes"):
        PublishedKey(os.urandom(15), START)
    assert match_gaen([good], SightingIndex([])) == []


def test_gaen_short_rolling_period_does_not_match_beyond_it() -> None:
    key = PublishedKey(os.urandom(16), START, rolling_period=10)
    late = gaen.rpi(gaen.rpik(key.key_data), START + 20)
    early = gaen.rpi(gaen.rpik(key.key_data), START + 5)
    assert match_gaen([key], SightingIndex([window(SchemeName.GAEN, late, (START + 20) * 600)])) == []
    assert match_gaen([key], SightingIndex([window(SchemeName.GAEN, early, (START + 5) * 600)]))


@pytest.mark.parametrize("native", [True, False])
def test_dp3t_key_expands_forward_to_today(native: bool) -> None:
    state = dp3t.new_key_state(DAY * 86400)
    published = PublishedKey(state.sk_for_day(DAY), DAY * 144)
    day3 = DAY + 3
    scheme = dp3t.Dp3tScheme(state)
    b = scheme.broadcast_at(day3 * 86400 + 5000, tx_power=4)
    assert b is not None
    windows = [
        *noise(SchemeName.DP3T, 500),
        window(SchemeName.DP3T, b.ephemeral_id, day3 * 86400 + 5010, b.service_data[16:]),
    ]
    found = match_dp3t([published], SightingIndex(windows), today=DAY + 5, native=native)
    assert len(found) == 1
    assert found[0].tx_power == 4
    assert [w.ephemeral_id for w in found[0].windows] == [b.ephemeral_id]
    # not yet expanded that far: 'today' before the sighting's day
    assert match_dp3t([published], SightingIndex(windows), today=DAY + 2, native=native) == []


def test_dp3t_ephid_heard_on_another_day_does_not_match() -> None:
    state = dp3t.new_key_state(DAY * 86400)
    published = PublishedKey(state.sk_for_day(DAY), DAY * 144)
    ephid = dp3t.ephids(state.sk_for_day(DAY + 1))[10]
    replay = window(SchemeName.DP3T, ephid, (DAY + 3) * 86400 + 40_000)
    assert match_dp3t([published], SightingIndex([replay]), today=DAY + 4) == []
    honest = window(SchemeName.DP3T, ephid, (DAY + 1) * 86400 + 40_000)
    assert match_dp3t([published], SightingIndex([honest]), today=DAY + 4)


def test_index_groups_windows_per_id() -> None:
    e = os.urandom(16)
    index = SightingIndex([window(SchemeName.GAEN, e, 60), window(SchemeName.GAEN, e, 120)])
    assert len(index) == 1 and len(index.by_id[e]) == 2


def test_dp3t_key_for_a_future_day_is_not_expanded() -> None:
    state = dp3t.new_key_state(DAY * 86400)
    ephid = dp3t.ephids(state.sk_for_day(DAY + 1))[0]
    future = PublishedKey(state.sk_for_day(DAY + 1), (DAY + 1) * 144)
    index = SightingIndex([window(SchemeName.DP3T, ephid, (DAY + 1) * 86400 + 10)])
    assert match_dp3t([future], index, today=DAY) == []
    assert match_dp3t([future], index, today=DAY + 1)
