"""A throwaway PostgreSQL cluster for the tests: Debian's ``postgresql`` binaries (``initdb`` + ``pg_ctl``)
in a temporary directory, listening on a unix socket only, no systemd and no port. PostgreSQL refuses to
run as root, so under root (CI) the cluster belongs to ``nobody``.

One cluster per test session (starting one takes a few seconds); each backend a test opens gets a database of its
own, made from a template that already holds the migrated schema, so tests neither see each other's rows nor
pay for the migration each time. Without the binaries the PostgreSQL tests fail in CI (``CI=true``) and
are skipped elsewhere with the reason, as the browser tests are.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.server.database import Database
from agent.server.tables import migrate

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"
TEMPLATE = "proxitrace_template"
TEST_CLUSTER_ENV = "PROXITRACE_TEST_POSTGRES_SOCKETS"  # set per test; support.backend_harness.backend_config reads it
# A throwaway cluster need not survive a crash: no fsync, no full-page writes (several times faster here).
_FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


@dataclass
class Cluster:
    socket_dir: Path

    def url(self, database: str) -> str:
        return cluster_url(self.socket_dir, database)


def cluster_url(socket_dir: Path | str, database: str) -> str:
    return f"postgresql:///{database}?host={socket_dir}&user={SUPERUSER}"


def database_for(socket_dir: str, data_dir: Path) -> str:
    """The URL of the database of the backend whose data directory is ``data_dir``: made (holding the
    current schema and nothing else) the first time, the same one when the backend is opened again, and
    another one for a second backend in the same test (federation peers)."""
    name = "t" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]
    admin = Database(cluster_url(socket_dir, "postgres"))
    try:
        if admin.one("SELECT 1 FROM pg_database WHERE datname = ?", (name,)) is None:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        admin.close()
    return cluster_url(socket_dir, name)


def _missing() -> str | None:
    if not (BIN_DIR / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({BIN_DIR}/initdb missing; apt-get install postgresql)"
    return None


def _run(args: list[str], user: str | None) -> None:
    out = subprocess.run(args, user=user, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """Start a cluster in a temporary directory (its ``TEMPLATE`` database migrated), stop and delete it."""
    root = Path(tempfile.mkdtemp(prefix="pg"))  # short: a unix socket path has at most 107 bytes
    root.chmod(0o755)
    data, sockets = root / "data", root / "s"
    user = None
    if os.geteuid() == 0:
        user = "nobody"
        owner = pwd.getpwnam(user)
        for d in (data, sockets):
            d.mkdir(mode=0o700)
            os.chown(d, owner.pw_uid, owner.pw_gid)
    else:
        sockets.mkdir()
    try:
        initdb = [str(BIN_DIR / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"]
        _run(initdb, user)
        options = " ".join([*_FAST, "-c", "listen_addresses=", "-c", f"unix_socket_directories={sockets}"])
        options += " -c max_connections=300"
        _run([str(BIN_DIR / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-o", options, "-w", "start"], user)
        try:
            cluster = Cluster(sockets)
            admin = Database(cluster.url("postgres"))
            admin.execute(f"CREATE DATABASE {TEMPLATE}")
            admin.close()
            template = Database(cluster.url(TEMPLATE))
            migrate(template)
            template.close()
            yield cluster
        finally:
            _run([str(BIN_DIR / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    with throwaway_cluster() as cluster:
        yield cluster
