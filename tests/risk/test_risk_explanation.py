"""Explanations: per day minutes per bucket, weights, score, threshold and why; never an ID or a key."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import Any

from agent.risk import (
    CwaModel,
    KeyAttributes,
    RiskLevel,
    SwissCovidModel,
    WindowConfig,
    exposure_windows_from_sightings,
)
from agent.sightings import SightingWindow

Sighting = Callable[..., SightingWindow]
TX = -10


def id_forms(ephemeral_id: bytes) -> list[str]:
    """Every way an ID could plausibly leak into text."""
    return [
        ephemeral_id.hex(),
        ephemeral_id.hex().upper(),
        base64.b64encode(ephemeral_id).decode(),
        base64.urlsafe_b64encode(ephemeral_id).decode().rstrip("="),
        repr(ephemeral_id),
        str(list(ephemeral_id)),
    ]


def exposure(sighting: Sighting, ids: list[bytes]) -> list[Any]:
    """Two keys: one close for 12 min (two IDs around a rotation), one at medium range for 8 min."""
    near = [sighting(m, -50, ephemeral_id=ids[m // 6 % 2], count=7) for m in range(12)]
    medium = [sighting(100 + m, -68, ephemeral_id=ids[2]) for m in range(8)]
    return [
        *exposure_windows_from_sightings(near, tx_power=TX),
        *exposure_windows_from_sightings(medium, tx_power=None, config=WindowConfig(default_tx_power=-10)),
    ]


def test_rendered_text_and_json_never_contain_ids_or_keys(sighting: Sighting, cwa_config: dict[str, Any]) -> None:
    ids = [os.urandom(16) for _ in range(3)]
    windows = exposure(sighting, ids)
    for model in (SwissCovidModel(), CwaModel.from_dict(cwa_config)):
        explanation = model.assess(windows).explain()
        rendered = [explanation.to_text(), json.dumps(explanation.to_dict()), str(explanation)]
        for text in rendered:
            for ephemeral_id in ids:
                for form in id_forms(ephemeral_id):
                    assert form not in text


def test_swisscovid_explanation_content(sighting: Sighting) -> None:
    windows = exposure(sighting, [b"\x01" * 16, b"\x02" * 16, b"\x03" * 16])
    explanation = SwissCovidModel().assess(windows).explain()
    data = explanation.to_dict()
    json.dumps(data)  # JSON-able
    assert data["model"] == "swisscovid"
    assert data["notify"] is True
    assert data["risk_level"] == "HIGH"
    (day,) = data["days"]
    assert day["date"] == "2024-03-01"
    assert day["threshold"] == 15
    assert day["score"] == 16.0  # 12 min x 1.0 + 8 min x 0.5
    assert day["buckets"] == [
        {"bucket": "< 55 dB", "minutes": 12, "weight": 1.0, "weighted_minutes": 12.0},
        {"bucket": "55 to < 63 dB", "minutes": 8, "weight": 0.5, "weighted_minutes": 4.0},
        {"bucket": ">= 63 dB", "minutes": 0, "weight": 0.0, "weighted_minutes": 0.0},
    ]
    assert "reaches the threshold of 15: notify" in day["why"]
    assert day["windows_counted"] == 2
    assert day["notes"] == [
        "the sender's TX power was unknown for 8 of 20 scan instance(s); -10 dBm was assumed for them"
    ]
    text = explanation.to_text()
    assert explanation.summary == "Notify: 1 day crossed the threshold (2024-03-01)."
    for line in (
        "Risk model: SwissCovid: typical attenuation, thresholds 55/63 dB, weights 1/0.5/0",
        "2024-03-01: HIGH, weighted minutes 16 (threshold 15); 2 window(s) counted, 0 ignored",
        "  < 55 dB: 12 min x 1 = 12",
        "  55 to < 63 dB: 8 min x 0.5 = 4",
        "  Note: the sender's TX power was unknown",
    ):
        assert line in text


def test_explains_why_a_day_did_not_cross(sighting: Sighting) -> None:
    windows = exposure_windows_from_sightings([sighting(m, -50) for m in range(9)], tx_power=TX)
    windows += exposure_windows_from_sightings([sighting(200 + m, -75) for m in range(30)], tx_power=TX)
    explanation = SwissCovidModel().assess(windows).explain()
    (day,) = explanation.to_dict()["days"]
    assert day["risk_level"] == "LOW"
    assert day["why"] == (
        "9 min at < 55 dB x 1 + 0 min at 55 to < 63 dB x 0.5 + 30 min at >= 63 dB x 0 "
        "(rounded up to whole minutes, over 2 window(s)) = 9 weighted minutes, "
        "6 short of the threshold of 15: no notification."
    )
    assert explanation.summary == (
        "No notification: no day crossed the threshold; the highest weighted minutes was 9 on 2024-03-01."
    )


def test_cwa_explanation_shows_windows_and_encounters(cwa_config: dict[str, Any], sighting: Sighting) -> None:
    key = KeyAttributes(transmission_risk_level=5)
    windows = exposure_windows_from_sightings([sighting(m, -75) for m in range(10)], tx_power=TX, key=key)
    assessment = CwaModel.from_dict(cwa_config).assess(windows)
    data = assessment.explain().to_dict()
    (day,) = data["days"]
    assert day["risk_level"] == "HIGH"
    assert day["score"] == 10.0
    assert day["threshold"] == 9
    assert day["distinct_encounters_high"] == 1
    assert day["buckets"][1] == {
        "bucket": "[63, 73) dB",
        "minutes": 10,
        "weight": 1.0,
        "weighted_minutes": 10.0,
    }
    (window,) = day["windows"]
    assert window["transmission_risk_level"] == 5
    assert window["transmission_risk_value"] == 1.0
    assert window["risk_level"] == "HIGH"
    assert "in [9, 99999] -> HIGH; notify." in day["why"]
    assert "TRL 5 (from the key)" in assessment.explain().to_text()


def test_days_without_risk_say_why(cwa_config: dict[str, Any], sighting: Sighting) -> None:
    windows = exposure_windows_from_sightings(
        [sighting(m, -75) for m in range(3)], tx_power=TX, key=KeyAttributes(transmission_risk_level=5)
    )
    (day,) = CwaModel.from_dict(cwa_config).assess(windows).days
    assert day.risk_level == RiskLevel.NONE
    assert day.reason.endswith("which no per-day range covers (the lowest starts at 5): no risk.")


def test_empty_assessment_explains_itself(cwa_config: dict[str, Any]) -> None:
    for model in (SwissCovidModel(), CwaModel.from_dict(cwa_config)):
        explanation = model.assess([]).explain()
        assert explanation.summary == "No notification: no exposure windows."
        assert explanation.to_dict()["days"] == []
        assert explanation.to_dict()["risk_level"] == "LOW"
