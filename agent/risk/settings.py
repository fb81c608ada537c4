"""Risk settings from a plain mapping (the ``[risk]`` table of a config file, already parsed), and ``assess``.

Pure: reading the file is the config reader's job; this only turns its mapping into values or says, with
the dotted path of the key, why not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.risk.cwa import CwaModel
from agent.risk.results import Assessment, RiskModel
from agent.risk.swisscovid import SwissCovidModel
from agent.risk.vocabulary import RiskConfigError, check_keys
from agent.risk.windows import ExposureWindow, WindowConfig


@dataclass(frozen=True)
class RiskSettings:
    """The ``[risk]`` table: which model, its parameters and the window building.

    The device's config and the backend's (which scores EBID reports with the very same model) both hand
    their ``[risk]`` mapping to :meth:`from_dict`, so one table means one thing on both sides.
    """

    model: RiskModel = field(default_factory=SwissCovidModel)
    windows: WindowConfig = field(default_factory=WindowConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "risk") -> RiskSettings:
        """Keys: model ("swisscovid" default | "cwa"), swisscovid (table), cwa (table, CWA's JSON shape),
        exposure_windows (table, see :meth:`WindowConfig.from_dict`)."""
        check_keys(data, where, {"model", "swisscovid", "cwa", "exposure_windows"})
        kind = data.get("model", SwissCovidModel.name)
        model: RiskModel
        if kind == SwissCovidModel.name:
            model = SwissCovidModel.from_dict(data.get("swisscovid", {}), f"{where}.swisscovid")
        elif kind == CwaModel.name:
            if "cwa" not in data:
                raise RiskConfigError(f"{where}.cwa: missing (model = 'cwa' needs the CWA risk configuration)")
            model = CwaModel.from_dict(data["cwa"], f"{where}.cwa")
        else:
            raise RiskConfigError(f"{where}.model: {kind!r} is not a risk model; use 'swisscovid' or 'cwa'")
        windows = WindowConfig.from_dict(data.get("exposure_windows", {}), f"{where}.exposure_windows")
        return cls(model=model, windows=windows)


def assess(windows: Iterable[ExposureWindow], model: RiskModel | None = None) -> Assessment:
    """Score exposure windows with ``model`` (SwissCovid defaults when None)."""
    return (model or SwissCovidModel()).assess(windows)
