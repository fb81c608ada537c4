"""Start and stop a private D-Bus and a simulated BlueZ as child processes, and always clean them up.

Used by the D-Bus test tier, the BLE benchmark and the ``testbed sim`` demo. The bus is a ``dbus-daemon``
with its own config and socket in a private directory — never ``--system``, whose socket is the real
BlueZ's — and everything this module starts runs in its own process group, which ``close()`` (also called
from context-manager exit, ``atexit`` and on Ctrl-C) kills by id.

Typical use::

    with SimBed({"adapters": [{"name": "hci0"}, {"name": "hci1", "x": 3}]}, workdir) as bed:
        os.environ.update(bed.env)          # bleak and the agent now talk to the simulated BlueZ
        ...
        bed.sim.restart()                   # like systemctl restart bluetooth
        summary = bed.air_summary()         # what went on air
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.sim.air_log import AirSummary, read_air_log, summarize

DBUS_DAEMON = "/usr/bin/dbus-daemon"
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class HarnessError(RuntimeError):
    """A child process did not come up; the message carries the tail of its log."""


class _Child:
    """One child process in its own process group, with its output in a file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._out = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._out,
            env=env,
            start_new_session=True,
        )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def read_line(self, deadline: float) -> str:
        """One stdout line, waiting at most until ``deadline`` (monotonic); "" on EOF or timeout."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=max(0.0, min(0.1, deadline - time.monotonic()))):
                    return self.proc.stdout.readline().decode(errors="replace")
                if not self.running():
                    return self.proc.stdout.readline().decode(errors="replace")
        return ""

    def signal(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps the process and closes its pipes."""
        code = self.proc.poll()
        if code is None:
            self.signal(signal.SIGTERM)
            code = self.wait(timeout)
            if code is None:
                self.signal(signal.SIGKILL)
                code = self.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._out.close()
        _LIVE.discard(self)
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_LIVE: weakref.WeakSet[_Child] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for child in list(_LIVE):
        child.signal(signal.SIGKILL)


class PrivateBus:
    """A dbus-daemon of our own on ``unix:path=<dir>/bus``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "bus"
        self.address = f"unix:path={self.socket}"
        self._child: _Child | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def start(self, timeout: float = 5.0) -> str:
        conf = self.directory / "bus.conf"
        conf.write_text(BUS_CONFIG.format(socket=self.socket))
        self._child = _Child(
            [DBUS_DAEMON, f"--config-file={conf}", "--nofork", "--nopidfile", "--print-address=1"],
            self.directory / "dbus-daemon.log",
        )
        line = self._child.read_line(time.monotonic() + timeout)
        if not line.startswith("unix:"):
            tail = self._child.log_tail()
            self.stop()
            raise HarnessError(f"dbus-daemon did not start: {tail or 'no output'}")
        return self.address

    def stop(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None
        self.socket.unlink(missing_ok=True)

    def kill(self) -> None:
        """The bus itself dies (what bleak reports as a lost D-Bus connection)."""
        if self._child is not None:
            self._child.signal(signal.SIGKILL)
            self._child.wait(5.0)


class SimProcess:
    """``python -m agent.sim`` on a given bus; start waits for READY."""

    def __init__(
        self,
        bus_address: str,
        config_path: Path,
        workdir: Path,
        clock_spec: str | None = None,
        air_log: Path | None = None,
        log_level: str = "INFO",
        receive_log: Path | None = None,
    ) -> None:
        self.bus_address = bus_address
        self.receive_log = receive_log
        self.config_path = config_path
        self.workdir = workdir
        self.clock_spec = clock_spec
        self.air_log = air_log
        self.log_level = log_level
        self.starts = 0
        self._child: _Child | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def running(self) -> bool:
        return self._child is not None and self._child.running()

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "agent.sim", "--bus", self.bus_address, "--config", str(self.config_path)]
        if self.clock_spec:
            argv += ["--clock", self.clock_spec]
        if self.air_log:
            argv += ["--air-log", str(self.air_log)]
        if self.receive_log:
            argv += ["--receive-log", str(self.receive_log)]
        return [*argv, "--log-level", self.log_level]

    def start(self, timeout: float = 15.0) -> None:
        if self.running():
            raise HarnessError("the simulator is already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        self._child = _Child(self.argv(), self.workdir / "sim.log", env)
        deadline = time.monotonic() + timeout
        while True:
            line = self._child.read_line(deadline)
            if line.strip() == "READY":
                self.starts += 1
                return
            if not line:
                tail = self._child.log_tail()
                self._child.close()
                self._child = None
                raise HarnessError(f"simulator did not become ready: {tail or 'no output'}")

    def stop(self, timeout: float = 5.0) -> int | None:
        """Clean stop (SIGTERM): the simulator releases adverts and removes its adapters first."""
        if self._child is None:
            return None
        code = self._child.close(timeout)
        self._child = None
        return code

    def kill(self) -> None:
        """SIGKILL: no Release, no InterfacesRemoved — a crashed bluetoothd."""
        if self._child is not None:
            self._child.signal(signal.SIGKILL)
            self._child.close(timeout=5.0)
            self._child = None

    def restart(self, kill: bool = False, down_seconds: float = 0.0, timeout: float = 15.0) -> None:
        """Like ``systemctl restart bluetooth`` (or a crash and restart with ``kill=True``)."""
        if kill:
            self.kill()
        else:
            self.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.start(timeout)


class SimBed:
    """A private bus plus a simulator, in a work directory; a context manager that cleans up everything."""

    def __init__(
        self,
        config: dict[str, Any] | Path,
        workdir: Path | None = None,
        clock_spec: str | None = None,
        air_log: bool = True,
        log_level: str = "INFO",
        receive_log: bool = False,
    ) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="proxitrace-sim-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, Path):
            self.config_path = config
        else:
            self.config_path = self.workdir / "sim.json"
            self.config_path.write_text(json.dumps(config))
        self.air_log_path = self.workdir / "air.jsonl" if air_log else None
        self.receive_log_path = self.workdir / "received.csv" if receive_log else None
        self.bus = PrivateBus(self.workdir)
        self.sim = SimProcess(
            self.bus.address,
            self.config_path,
            self.workdir,
            clock_spec,
            self.air_log_path,
            log_level,
            self.receive_log_path,
        )

    @property
    def bus_address(self) -> str:
        return self.bus.address

    @property
    def env(self) -> dict[str, str]:
        """Point dbus-fast (and so bleak) at the private bus as if it were the system bus."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address}

    def start(self) -> SimBed:
        try:
            self.bus.start()
            self.sim.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.sim.stop()
        self.bus.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def air_records(self) -> list[dict[str, Any]]:
        if self.air_log_path is None or not self.air_log_path.exists():
            return []
        return read_air_log(self.air_log_path)

    def air_summary(self) -> AirSummary:
        return summarize(self.air_records())

    def __enter__(self) -> SimBed:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
