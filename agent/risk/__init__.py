"""Exposure risk: from sightings of matched IDs to a per-day score, a notify decision and its explanation.

The pipeline is the one GAEN v2 made common currency, so that a published scoring model can be reused as is:

1. sightings of one matched key → **exposure windows** (at most 30 min, one UTC day, one key) made of
   **scan instances** (typical and minimum attenuation, seconds since the last scan): :mod:`.windows`;
2. a **model** turns windows into minutes per attenuation bucket, weights them, sums them per day and
   decides per day whether the threshold is crossed: :mod:`.swisscovid` (the default: thresholds 55/63 dB
   on the typical attenuation, weights 1.0/0.5/0, notify at >= 15 weighted minutes on a day) and
   :mod:`.cwa` (built from the Corona-Warn-App risk-calculation configuration), one interface
   (:class:`RiskModel`);
3. every result carries its **explanation**: per day the minutes in each bucket, the weights, the score,
   the threshold and a sentence why it did or did not cross: :mod:`.results`.

:mod:`.vocabulary` holds the GAEN v2 enums and the two errors, :mod:`.settings` the ``[risk]`` table.

Privacy: this package never sees a key, and IDs only pass through the sighting builder, which reads the
times and signal strengths of a window and drops the rest. Nothing in a result or an explanation can
therefore reveal an ID. The package is pure: no clock, no I/O; days are unix day numbers
(``unix_seconds // 86400``) the caller supplies.

This module is the package's face: import from ``agent.risk``, not from its parts.
"""

from agent.risk.cwa import (
    AttenuationWeight,
    CwaModel,
    MinutesAtAttenuationFilter,
    Range,
    RiskLevelMapping,
    TrlEncoding,
)
from agent.risk.results import (
    Assessment,
    BucketMinutes,
    DayAssessment,
    Explanation,
    RiskModel,
    WindowAssessment,
)
from agent.risk.settings import (
    RiskSettings,
    assess,
)
from agent.risk.swisscovid import (
    SwissCovidModel,
)
from agent.risk.vocabulary import (
    CONTAGIOUS_DAYS_BEFORE_ONSET,
    MAX_ATTENUATION_DB,
    CalibrationConfidence,
    Infectiousness,
    RiskConfigError,
    RiskInputError,
    RiskLevel,
    first_contagious_day,
)
from agent.risk.windows import (
    DEFAULT_MAX_WINDOW_SECONDS,
    AttenuationSample,
    DiagnosisKeyMapping,
    ExposureWindow,
    KeyAttributes,
    ScanInstance,
    WindowConfig,
    attenuation_db,
    attenuation_to_db,
    exposure_windows_from_samples,
    exposure_windows_from_sightings,
    samples_from_sightings,
)
from agent.schemes.published import (
    ReportType,
)

__all__ = [
    "CONTAGIOUS_DAYS_BEFORE_ONSET",
    "DEFAULT_MAX_WINDOW_SECONDS",
    "MAX_ATTENUATION_DB",
    "Assessment",
    "AttenuationSample",
    "AttenuationWeight",
    "BucketMinutes",
    "CalibrationConfidence",
    "CwaModel",
    "DayAssessment",
    "DiagnosisKeyMapping",
    "Explanation",
    "ExposureWindow",
    "Infectiousness",
    "KeyAttributes",
    "MinutesAtAttenuationFilter",
    "Range",
    "ReportType",
    "RiskConfigError",
    "RiskInputError",
    "RiskLevel",
    "RiskLevelMapping",
    "RiskModel",
    "RiskSettings",
    "ScanInstance",
    "SwissCovidModel",
    "TrlEncoding",
    "WindowAssessment",
    "WindowConfig",
    "assess",
    "attenuation_db",
    "attenuation_to_db",
    "exposure_windows_from_samples",
    "exposure_windows_from_sightings",
    "first_contagious_day",
    "samples_from_sightings",
]
