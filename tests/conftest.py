"""Shared test fixtures. ``make_bed``: the D-Bus tier's private dbus-daemon and simulated BlueZ per test
(about 0.3 s to start). ``small_fs``: a real, tiny tmpfs (root only) to fill up or turn read-only;
``failing_fs``: a loop-mounted ext4 with ``errors=remount-ro`` that can be made to fail under open files.
The backend's fixtures (support.backend_fixtures) are registered here once for the suites that use them:
pytest takes ``pytest_plugins`` only from this top-level conftest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.filesystems import FailingFs, SmallFs

from agent.sim.harness import SimBed

pytest_plugins = ["support.backend_fixtures"]


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


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    path = tmp_path / "small"
    path.mkdir()
    fs = SmallFs(path)
    yield fs
    fs.unmount()


@pytest.fixture
def failing_fs(tmp_path: Path) -> Iterator[FailingFs]:
    path = tmp_path / "ext4"
    path.mkdir()
    fs = FailingFs(path, tmp_path / "ext4.img")
    yield fs
    fs.unmount()
