"""How the store fails, and what it says when it does: the error types, an operator-readable cause for a
failed write or open, the integrity check, and moving a corrupt database aside.

Why it exists: a wearable runs for weeks on SD cards that fill, turn read-only or corrupt, and on mounts
(9p, network) that cannot lock or map the WAL; classifying those faults is its own concern, separate from
what the store keeps and how.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger("agent.store")  # the store's one logger name, whichever module of it speaks

CORRUPT_SUFFIX = ".corrupt-"
PROC_LOCKS = Path("/proc/locks")


class StoreError(RuntimeError):
    """The database cannot be used as it is; the message says why, and nothing was changed."""


class Corrupt(Exception):
    """Internal: the database failed its integrity check and was moved to ``aside``."""

    def __init__(self, aside: Path) -> None:
        self.aside = aside


class StoreUnusable(StoreError):
    """The state directory cannot hold an SQLite database at all (read-only, no locks, no WAL shared memory).
    Retrying cannot help until someone fixes the mount, so the daemon exits with EX_CONFIG."""


def write_failure_cause(exc: BaseException, where: Path | None = None) -> str:
    """Why SQLite (or the OS under it) could not write, in words an operator can act on. SQLite reports a
    file system turned read-only under it (an SD card failing) as a plain write I/O error, and the mount
    flags may still say rw, so ``where`` is asked by creating a file in it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if where is not None and (name.startswith("SQLITE_IOERR") or name.startswith("SQLITE_READONLY")):
        probe = where / f".write-probe-{os.getpid()}"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
        except FileExistsError:
            pass
        except OSError as probed:
            return write_failure_cause(probed)
    if isinstance(exc, OSError):
        return {
            errno.EROFS: "read-only file system",
            errno.ENOSPC: "disk full",
            errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
        }.get(exc.errno or 0, os.strerror(exc.errno or 0) if exc.errno else str(exc))
    if name == "SQLITE_FULL":
        return "disk full"
    if name.startswith("SQLITE_READONLY"):
        return "read-only file system or database"
    if name.startswith("SQLITE_IOERR") and name.endswith("LOCK"):
        return "the file system cannot lock files (a 9p or network mount?)"
    if name.startswith("SQLITE_IOERR_SHM") or name == "SQLITE_PROTOCOL":
        return "the file system cannot map the WAL's shared memory (a 9p or network mount?)"
    if name.startswith("SQLITE_BUSY"):
        return "locked by another process (is another agent running on this state directory?)"
    if name.startswith("SQLITE_CANTOPEN"):
        return "cannot open the database file"
    if name.startswith("SQLITE_IOERR"):
        return f"disk I/O error ({name})"
    return f"{name or type(exc).__name__}: {exc}"


def foreign_lock(path: Path) -> str | None:
    """Who else holds a POSIX lock on the database or its WAL index, from the kernel's own table.

    SQLite reports a conflicting lock it cannot wait out as "locking protocol" or "database is locked", which
    reads like a broken mount; the kernel knows the holder, so the operator is told which process to look
    at. None when no other process holds a lock there (the cause is then the file system itself)."""
    files = {}
    for f in (path, path.with_name(path.name + "-shm")):
        try:
            st = f.stat()
        except OSError:
            continue
        files[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = f.name
    try:
        table = PROC_LOCKS.read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.replace("->", " ").split()
        if len(fields) < 6 or fields[1] not in ("POSIX", "OFDLCK"):
            continue
        kind, pid, where = fields[3], fields[4], fields[5].split(":")
        if pid == str(os.getpid()) or len(where) != 3:
            continue
        key = (int(where[0], 16), int(where[1], 16), int(where[2]))
        if key in files:
            holder = "another process" if pid == "-1" else f"another process (pid {pid})"
            return f"{files[key]} is held by {holder} with a {kind.lower()} lock SQLite cannot share"
    return None


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """``PRAGMA quick_check`` (the b-tree structure, not the slow index cross-check): None when sound."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"integrity check failed ({exc})"
    if rows == [("ok",)]:
        return None
    first = " ".join(str(rows[0][0]).split())[:160]
    return f"integrity check failed ({len(rows)} problem(s): {first})"


def remove_database(path: Path) -> None:
    """Undo a database this open created, so a refused start leaves nothing half-written."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a read-only directory: the create failed too, so nothing is there
            log.debug("cannot remove %s: %s", p.name, exc)


def move_aside(path: Path, problem: str) -> Path:
    """Rename a corrupt database (with its WAL) out of the way: kept for a post-mortem, never deleted."""
    aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{int(time.time())}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    os.replace(path, aside)
    log.error("store: %s: %s; moved it aside to %s and started an empty store", path, problem, aside.name)
    return aside
