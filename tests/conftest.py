"""Shared test fixtures. ``make_bed``: the D-Bus tier's private dbus-daemon and simulated BlueZ per test
(about 0.3 s to start). ``small_fs``: a real, tiny tmpfs (root only) to fill up or turn read-only."""

from __future__ import annotations

import os
import subprocess
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


class SmallFs:
    """A tmpfs of a few hundred KiB mounted for one test: a disk that really fills (ENOSPC) and really turns
    read-only (EROFS), which a file-size rlimit (EFBIG) or a chmod (ignored by root) would not give."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def mount(self, size_kib: int) -> None:
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {out.stderr.strip()}")

    def fill(self) -> int:
        """Take every free block; returns the bytes taken."""
        taken = 0
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                taken += os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        return taken

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def remount(self, read_only: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    path = tmp_path / "small"
    path.mkdir()
    fs = SmallFs(path)
    yield fs
    fs.unmount()
