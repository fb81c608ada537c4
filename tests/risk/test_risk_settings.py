"""Loading the [risk] table (as the daemon does from TOML): model choice, window building, clear errors."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from agent.risk import (
    CwaModel,
    DiagnosisKeyMapping,
    Infectiousness,
    ReportType,
    RiskConfigError,
    RiskSettings,
    SwissCovidModel,
    WindowConfig,
)

TOML = """
[risk]
model = "swisscovid"

[risk.swisscovid]
attenuation_thresholds_db = [53, 60]
weights = [1.0, 0.5, 0.0]
notify_at_weighted_minutes = 15

[risk.exposure_windows]
scan_interval_seconds = 300
max_window_minutes = 30
default_tx_power_dbm = -8

[risk.exposure_windows.diagnosis_keys]
infectiousness_for_unlisted_days = "none"
report_type_when_missing = "confirmed_clinical_diagnosis"

[risk.exposure_windows.diagnosis_keys.days_since_onset_to_infectiousness]
-2 = "standard"
0 = "high"
"""


def test_defaults_are_swisscovid_with_continuous_scanning() -> None:
    settings = RiskSettings.from_dict({})
    assert settings == RiskSettings()
    assert settings.model == SwissCovidModel()
    assert settings.windows == WindowConfig()
    assert settings.windows.scan_interval_seconds == 60
    assert settings.windows.max_window_seconds == 1800


def test_loads_from_toml() -> None:
    settings = RiskSettings.from_dict(tomllib.loads(TOML)["risk"])
    assert settings.model == SwissCovidModel(attenuation_thresholds_db=(53, 60))
    assert settings.windows.scan_interval_seconds == 300
    assert settings.windows.default_tx_power == -8
    keys = settings.windows.diagnosis_keys
    assert keys.infectiousness(-2) == Infectiousness.STANDARD
    assert keys.infectiousness(0) == Infectiousness.HIGH
    assert keys.infectiousness(5) == Infectiousness.NONE
    assert keys.infectiousness(None) == Infectiousness.STANDARD
    assert keys.report_type(None) == ReportType.CONFIRMED_CLINICAL_DIAGNOSIS
    assert keys.report_type(ReportType.UNKNOWN) == ReportType.CONFIRMED_CLINICAL_DIAGNOSIS
    assert keys.report_type(ReportType.SELF_REPORT) == ReportType.SELF_REPORT


def test_cwa_model_from_its_own_json_shape(cwa_config: dict[str, Any]) -> None:
    settings = RiskSettings.from_dict({"model": "cwa", "cwa": cwa_config})
    assert isinstance(settings.model, CwaModel)
    assert settings.model == CwaModel.from_dict(cwa_config)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"modle": "cwa"}, r"^risk\.modle: unknown setting"),
        ({"model": "nhs"}, r"^risk\.model: 'nhs' is not a risk model"),
        ({"model": "cwa"}, r"^risk\.cwa: missing"),
        ({"model": "cwa", "cwa": {"trlEncoding": {}}}, r"^risk\.cwa\.minutesAtAttenuationWeights: missing"),
        ({"swisscovid": {"threshold": 15}}, r"^risk\.swisscovid\.threshold: unknown setting"),
        (
            {"exposure_windows": {"scan_interval_seconds": 10}},
            r"^risk\.exposure_windows\.scan_interval_seconds",
        ),
        (
            {"exposure_windows": {"scan_interval_seconds": 60.5}},
            r"^risk\.exposure_windows\.scan_interval_seconds",
        ),
        ({"exposure_windows": {"max_window_minutes": 0}}, r"^risk\.exposure_windows\.max_window_minutes"),
        (
            {"exposure_windows": {"default_tx_power_dbm": -300}},
            r"^risk\.exposure_windows\.default_tx_power_dbm",
        ),
        (
            {"exposure_windows": {"receiver_correction": 3}},
            r"^risk\.exposure_windows\.receiver_correction: unknown",
        ),
        (
            {"exposure_windows": {"diagnosis_keys": []}},
            r"^risk\.exposure_windows\.diagnosis_keys: expected a table",
        ),
        (
            {"exposure_windows": {"diagnosis_keys": {"days_since_onset_to_infectiousness": {"x": "high"}}}},
            r"^risk\.exposure_windows\.diagnosis_keys\.days_since_onset_to_infectiousness: key 'x'",
        ),
        (
            {"exposure_windows": {"diagnosis_keys": {"days_since_onset_to_infectiousness": {"1": "extreme"}}}},
            r"^risk\.exposure_windows\.diagnosis_keys\.days_since_onset_to_infectiousness\.1: 'extreme'",
        ),
        (
            {"exposure_windows": {"diagnosis_keys": {"report_type_when_missing": "revoked"}}},
            r"^risk\.exposure_windows\.diagnosis_keys\.report_type_when_missing",
        ),
    ],
)
def test_bad_settings_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(RiskConfigError, match=message):
        RiskSettings.from_dict(data)


def test_mapping_is_immutable() -> None:
    mapping = DiagnosisKeyMapping(days_since_onset_to_infectiousness={0: Infectiousness.HIGH})
    with pytest.raises(TypeError):
        mapping.days_since_onset_to_infectiousness[1] = Infectiousness.HIGH  # type: ignore[index]
