"""Real file systems that fail on demand, for the store's fault tests (root only; the tests skip otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


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


class FailingFs:
    """A loop-mounted ext4 (``errors=remount-ro``) that turns read-only under open writers when its kernel
    error path is triggered, as a failing SD card does on a Pi (a plain remount,ro refuses while files are
    open for writing)."""

    def __init__(self, path: Path, image: Path) -> None:
        self.path = path
        self.image = image
        self._device: str | None = None

    def mount(self, size_mib: int = 16) -> None:
        with self.image.open("wb") as f:
            f.truncate(size_mib << 20)
        made = subprocess.run(["mkfs.ext4", "-q", str(self.image)], capture_output=True, text=True)
        mounted = subprocess.run(
            ["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path)], capture_output=True, text=True
        )
        if made.returncode != 0 or mounted.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 here (needs root): {(made.stderr + mounted.stderr).strip()}")
        source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(self.path)], capture_output=True, text=True)
        self._device = Path(source.stdout.strip()).name

    def fail(self) -> None:
        trigger = Path(f"/sys/fs/ext4/{self._device}/trigger_fs_error")
        if not trigger.exists():
            pytest.skip("this kernel's ext4 has no trigger_fs_error")
        trigger.write_text("proxitrace test")

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


# SQLite's WAL index: the "dead man switch" byte every connection read-locks while it has the -shm mapped.
WAL_INDEX_DMS_BYTE = 128

_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
print("held", flush=True)
sys.stdin.read()
"""


class LockHeld:
    """Another process holding a POSIX write lock on one byte of ``path`` until the block ends: a real
    conflicting lock in the kernel's table (a backup tool, a stuck sqlite3 shell), not a mocked error."""

    def __init__(self, path: Path, offset: int = WAL_INDEX_DMS_BYTE) -> None:
        self.path = path
        self.offset = offset
        self._proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> LockHeld:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(self.path), str(self.offset)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None and self._proc.stdout.readline() == "held\n"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(10)
