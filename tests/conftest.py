"""Shared test fixtures. ``make_bed``: the D-Bus tier's private dbus-daemon and simulated BlueZ per test
(about 0.3 s to start)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sim.harness import SimBed


@pytest.fixture
def make_bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SimBed]]:
    """Start a bed from a config dict; the system bus address points at it for the rest of the test."""
    beds: list[SimBed] = []

    def make(config: dict[str, Any], **kwargs: Any) -> SimBed:
        bed = SimBed(config, tmp_path / f"bed{len(beds)}", **kwargs).start()
        beds.append(bed)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bed.bus_address)
        return bed

    yield make
    for bed in beds:
        bed.close()
