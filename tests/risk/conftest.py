"""Fixtures for the risk tests: the CWA vector (copied into tests/data) and a sighting-window factory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.schemes.base import SchemeName
from agent.sightings import SightingWindow

DATA = Path(__file__).resolve().parent.parent / "data"

# 2024-03-01 00:00 UTC as a unix day; any day works, a fixed one keeps failures reproducible.
DAY = 19783
DAY_START = DAY * 86_400


@pytest.fixture(scope="session")
def cwa_vector() -> dict[str, Any]:
    return json.loads((DATA / "cwa_risk_cases.json").read_text())


@pytest.fixture(scope="session")
def cwa_config(cwa_vector: dict[str, Any]) -> dict[str, Any]:
    return cwa_vector["inputs"]["defaultRiskCalculationConfiguration"]


SightingFactory = Callable[..., SightingWindow]


@pytest.fixture
def sighting() -> SightingFactory:
    """Build a SightingWindow at ``minute`` minutes after DAY_START with ``count`` equal RSSI callbacks
    (or an explicit rssi_min/rssi_max/rssi_sum)."""

    def make(
        minute: int,
        rssi: int = -60,
        *,
        count: int = 1,
        ephemeral_id: bytes = b"\x11" * 16,
        tx_power: int | None = None,
        rssi_min: int | None = None,
        rssi_max: int | None = None,
        rssi_sum: int | None = None,
        scheme: SchemeName = SchemeName.GAEN,
        start: int = DAY_START,
    ) -> SightingWindow:
        window_start = start + minute * 60
        return SightingWindow(
            scheme=scheme,
            ephemeral_id=ephemeral_id,
            window_start=window_start,
            count=count,
            rssi_min=rssi if rssi_min is None else rssi_min,
            rssi_max=rssi if rssi_max is None else rssi_max,
            rssi_sum=rssi * count if rssi_sum is None else rssi_sum,
            tx_power=tx_power,
            metadata=b"\x40\x00\x00\x00",
            first_seen=window_start + 1.0,
            last_seen=window_start + 59.0,
        )

    return make
