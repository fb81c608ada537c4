"""EBID risk on the server, with the very model the devices use (``agent.risk``).

In the EBID model the server, not the device, decides who is at risk, so it must score exactly as
a device would: each exposure (one submission: one EBID heard in one period) is one source, since the
backend keeps no report a submission belongs to, its scan records become attenuation
samples, the samples exposure windows (with the report type of the key that signed the submission's
token, as a GAEN key's own report type), and the configured model (SwissCovid by default, which ignores
report types, or CWA, which weighs them) scores the windows per day. The explanation travels back to the
device with the verdict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from agent import risk
from agent.server.db import Exposure
from agent.server.ebid import ScoredRisk
from agent.sightings import SCAN_WINDOW_SECONDS


class ServerRiskScorer:
    def __init__(self, settings: risk.RiskSettings) -> None:
        self._settings = settings

    def windows(self, exposures: Sequence[Exposure]) -> list[risk.ExposureWindow]:
        by_source: dict[int, list[risk.AttenuationSample]] = defaultdict(list)
        for i, e in enumerate(exposures):
            for s in e.scans:
                t = int(s.time)
                by_source[i].append(
                    risk.AttenuationSample(
                        window_start=t - t % SCAN_WINDOW_SECONDS,
                        typical_attenuation=s.typical_attenuation,
                        min_attenuation=s.min_attenuation,
                        assumed_tx_power=s.assumed_tx_power,
                    )
                )
        out: list[risk.ExposureWindow] = []
        for i, samples in by_source.items():
            key = risk.KeyAttributes(report_type=exposures[i].report_type)
            out.extend(risk.exposure_windows_from_samples(samples, key=key, config=self._settings.windows))
        return out

    def __call__(self, exposures: Sequence[Exposure], now: float) -> ScoredRisk:
        assessment = self._settings.model.assess(self.windows(exposures))
        return ScoredRisk(assessment.notify, assessment.explain().to_dict())
