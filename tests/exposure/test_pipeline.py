"""Heard IDs in the store + a published list → per-day results with explanations, via the CLI too."""

import json
import os
import subprocess
import sys
from pathlib import Path

from agent.exposure import list_digest, process_list
from agent.risk import RiskSettings
from agent.schemes import dp3t, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.store import SightingAggregator, Store

DAY = 20_600
T = DAY * 86_400 + 9 * 3600


def hear(store: Store, scheme: SchemeName, ephid: bytes, start: float, minutes: int, rssi: int, meta: bytes) -> None:
    agg = SightingAggregator()
    for second in range(0, minutes * 60, 4):
        agg.add(scheme, ephid, start + second, rssi, None, meta)
    store.flush(agg)


def test_gaen_contact_of_20_minutes_close_by_notifies_with_an_explanation(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    tek = os.urandom(16)
    key = PublishedKey(tek, DAY * 144, transmission_risk_level=4)
    interval = gaen.enin(T)
    rpi = gaen.rpi(gaen.rpik(tek), interval)
    aem = gaen.encrypt_metadata(gaen.aemk(tek), rpi, gaen.metadata(-8))
    hear(store, SchemeName.GAEN, rpi, interval * 600, 10, -55, aem)  # attenuation 47 dB: close
    rpi2 = gaen.rpi(gaen.rpik(tek), interval + 1)
    hear(
        store,
        SchemeName.GAEN,
        rpi2,
        (interval + 1) * 600,
        10,
        -58,
        gaen.encrypt_metadata(gaen.aemk(tek), rpi2, gaen.metadata(-8)),
    )
    hear(store, SchemeName.GAEN, os.urandom(16), T, 30, -50, os.urandom(4))  # someone not on the list
    decoys = [PublishedKey(os.urandom(16), DAY * 144) for _ in range(50)]
    data = b"list bytes"
    outcome = process_list(
        store,
        SchemeName.GAEN,
        [*decoys, key],
        list_digest(data),
        "test",
        T + 3600,
        RiskSettings(),
        receiver_correction=0.0,
    )
    assert outcome.matched_keys == 1 and outcome.notify
    [record] = store.exposures()
    assert record.notify and record.day == DAY and record.score >= 15
    day = record.explanation["days"][0]
    assert day["crossed"] and day["why"]
    text = json.dumps(record.explanation)
    for secret in (tek, rpi, rpi2):
        assert secret.hex() not in text
    again = process_list(store, SchemeName.GAEN, [key], list_digest(data), "test", T + 7200, RiskSettings(), 0.0)
    assert again.already_processed and len(store.exposures()) == 1


def test_dp3t_far_contact_is_recorded_but_does_not_notify(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    state = dp3t.new_key_state(DAY * 86_400)
    b = dp3t.Dp3tScheme(state).broadcast_at(T, tx_power=-8)
    assert b is not None
    hear(store, SchemeName.DP3T, b.ephemeral_id, T, 14, -80, b.service_data[16:])  # attenuation 72 dB: far
    key = PublishedKey(state.sk_for_day(DAY), DAY * 144)
    outcome = process_list(store, SchemeName.DP3T, [key], "ab" * 32, "test", T + 3600, RiskSettings(), 0.0)
    assert outcome.matched_keys == 1 and not outcome.notify
    [record] = store.exposures()
    assert not record.notify
    store.close()
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--state-dir", str(tmp_path), "exposures", "--explain"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "No notification: 0 of 1 day(s)" in out.stdout and "why:" in out.stdout
    assert b.ephemeral_id.hex() not in out.stdout
    js = json.loads(
        subprocess.run(
            [sys.executable, "-m", "agent", "--state-dir", str(tmp_path), "exposures", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert js[0]["scheme"] == "dp3t" and js[0]["notify"] is False


def test_wipe_erases_after_confirmation(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    hear(store, SchemeName.GAEN, os.urandom(16), T, 2, -60, b"")
    store.close()
    cmd = [sys.executable, "-m", "agent", "--state-dir", str(tmp_path), "wipe"]
    refused = subprocess.run(cmd, input="n\n", capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert list(Store.open(tmp_path).windows())
    done = subprocess.run(cmd, input="y\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "erased" in done.stdout
    assert list(Store.open(tmp_path).windows()) == []
