"""The commands as people run them, as subprocesses against `proxitrace backend serve` on 127.0.0.1.

Backend and devices share an accelerated clock (one real second = one simulated hour), so a key's day can
end and its release bucket close within a test."""

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.backend_harness import heard

from agent.clock import AcceleratedClock
from agent.keys import KeyRing
from agent.schemes.base import SchemeName
from agent.store import Store

DAY = 86_400
SPEED = 3600.0


def proxitrace(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )


class Scene:
    def __init__(self, tmp_path: Path) -> None:
        midnight = (int(time.time()) // DAY) * DAY
        self.clock = AcceleratedClock(start=midnight + 20 * 3600, speed=SPEED)  # 20:00 today, simulated
        self.spec = self.clock.spec()
        self.tmp = tmp_path
        self.backend_toml = tmp_path / "backend.toml"
        self.backend_toml.write_text(
            f'[server]\ndata_dir = "{tmp_path / "backend"}"\nclock = "{self.spec}"\n'
            "[ebid]\npow_difficulty = 10\nchallenge_ttl_seconds = 86400\naccess_token_ttl_seconds = 86400\n"
            "[upload]\nmin_response_seconds = 0.2\ntoken_ttl_seconds = 86400\n"  # minutes are milliseconds here
        )
        self.server: subprocess.Popen[str] | None = None
        self.url = ""

    def agent_config(self, name: str, scheme: str, public_key: str) -> Path:
        path = self.tmp / f"{name}.toml"
        path.write_text(
            f'[agent]\nscheme = "{scheme}"\nclock = "{self.spec}"\n'
            f'[backend]\nurl = "{self.url}"\npublic_key = "{public_key}"\n'
        )
        return path

    def start(self) -> float:
        began = time.monotonic()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "agent", "backend", "serve", "--config", str(self.backend_toml), "--port", "0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.server.stderr is not None
        for line in self.server.stderr:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found[1]
                return time.monotonic() - began
        raise AssertionError("the backend did not start")

    def stop(self) -> tuple[int, str]:
        assert self.server is not None and self.server.stderr is not None
        self.server.send_signal(signal.SIGTERM)
        code = self.server.wait(timeout=15)
        return code, self.server.stderr.read()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    s = Scene(tmp_path)
    yield s
    if s.server is not None and s.server.poll() is None:
        s.server.kill()
        s.server.wait()


def test_keygen_serve_report_sync_and_clean_shutdown(scene: Scene) -> None:
    keygen = proxitrace("backend", "keygen", "--config", str(scene.backend_toml))
    assert keygen.returncode == 0, keygen.stderr
    public = re.search(r'public_key = "([^"]+)"', keygen.stdout)
    assert public and "BEGIN PUBLIC KEY" in keygen.stdout
    key_file = scene.tmp / "backend" / "signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = proxitrace("backend", "keygen", "--config", str(scene.backend_toml))
    assert again.returncode == 0 and public[1] in again.stdout and "kept" in again.stderr

    startup = scene.start()
    assert startup < 10
    a_state, b_state = scene.tmp / "a", scene.tmp / "b"
    a_conf = scene.agent_config("a", "gaen", public[1])
    b_conf = scene.agent_config("b", "gaen", public[1])
    contact = scene.clock.now() - 29 * 3600  # yesterday 15:00, simulated
    store_a, store_b = Store.open(a_state), Store.open(b_state)
    ring = KeyRing(store_a, SchemeName.GAEN)
    ring.ensure(contact)
    store_b.add_windows(heard(ring.scheme(), contact, minutes=20))
    store_a.close()
    store_b.close()

    tan = proxitrace("backend", "tan", "issue", "--config", str(scene.backend_toml), "--valid", "2d")
    assert tan.returncode == 0 and re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}\n", tan.stdout)
    refused = proxitrace(
        "--config", str(a_conf), "--state-dir", str(a_state), "report", "--tan", tan.stdout.strip(), stdin="n\n"
    )
    assert refused.returncode == 1 and "2 daily key (TEK)s covering" in refused.stdout
    assert "aborted" in refused.stderr
    sent = proxitrace(
        "--config", str(a_conf), "--state-dir", str(a_state), "report", "--tan", tan.stdout.strip(), "--yes"
    )
    assert sent.returncode == 0 and "report sent" in sent.stdout, sent.stderr  # the TAN survived the refusal

    outcome: dict[str, object] = {}
    for _ in range(20):  # the 20-22 h bucket closes ~2 real seconds after the start
        result = proxitrace("--config", str(b_conf), "--state-dir", str(b_state), "sync", "--json")
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        if outcome["notify"]:
            break
        time.sleep(0.5)
    assert outcome["notify"] is True and outcome["matched_keys"] == 1

    code, log = scene.stop()
    assert code == 0
    assert tan.stdout.strip() not in log and "127.0.0.1 " not in log.replace(scene.url, "")


def test_ebid_register_and_status(scene: Scene) -> None:
    keygen = proxitrace("backend", "keygen", "--config", str(scene.backend_toml))
    public = re.search(r'public_key = "([^"]+)"', keygen.stdout)
    assert public
    scene.start()
    conf = scene.agent_config("e", "ebid", public[1])
    state = scene.tmp / "e"
    code = proxitrace("backend", "enrol", "issue", "--config", str(scene.backend_toml)).stdout.strip()
    result = proxitrace("--config", str(conf), "--state-dir", str(state), "register", "--code", code)
    assert result.returncode == 0 and "registered (country code 1); EBIDs for the next 48 h" in result.stdout, (
        result.stderr
    )
    again = proxitrace("--config", str(conf), "--state-dir", str(state), "register", "--code", code)
    assert again.returncode == 1 and "enrolment code already used" in again.stderr
    status = proxitrace("--config", str(conf), "--state-dir", str(state), "status-check")
    assert status.returncode == 0 and status.stdout.startswith("not at risk"), status.stderr
    checked = proxitrace("--config", str(conf), "--state-dir", str(state), "status-check", "--json")
    assert json.loads(checked.stdout)["has_capability"] is True  # registering kept a re-registration capability
    sync = proxitrace("--config", str(conf), "--state-dir", str(state), "sync")
    assert sync.returncode == 1 and "use `proxitrace status-check`" in sync.stderr
    assert scene.stop()[0] == 0


def test_bad_arguments_and_config(tmp_path: Path) -> None:
    missing = proxitrace("report")
    assert missing.returncode == 2 and "Missing option '--tan'" in missing.stderr
    bad_date = proxitrace("report", "--tan", "X", "--onset", "2020-13-01")
    assert bad_date.returncode == 2 and "--onset" in bad_date.stderr
    no_url = tmp_path / "c.toml"
    no_url.write_text('[agent]\nscheme = "gaen"\n')
    result = proxitrace("--config", str(no_url), "--state-dir", str(tmp_path / "s"), "sync")
    assert result.returncode == 1 and "backend.url: not set" in result.stderr
    down = tmp_path / "d.toml"
    down.write_text('[agent]\nscheme = "gaen"\n[backend]\nurl = "http://127.0.0.1:9"\npublic_key = ""\n')
    result = proxitrace("--config", str(down), "--state-dir", str(tmp_path / "s"), "sync")
    assert result.returncode == 1 and "backend.public_key: not set" in result.stderr
    bad_backend = tmp_path / "b.toml"
    bad_backend.write_text("[ebid]\npow_difficulty = 99\n")
    result = proxitrace("backend", "serve", "--config", str(bad_backend))
    assert result.returncode == 1 and "ebid.pow_difficulty: must be between 0 and 32" in result.stderr
    no_key = tmp_path / "k.toml"
    no_key.write_text(f'[server]\ndata_dir = "{tmp_path / "k"}"\n')
    result = proxitrace("backend", "serve", "--config", str(no_key))
    assert result.returncode == 1 and "run `proxitrace backend keygen` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_busy_port(tmp_path: Path) -> None:
    config = tmp_path / "b.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    assert proxitrace("backend", "keygen", "--config", str(config)).returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = proxitrace("backend", "serve", "--config", str(config), "--port", str(port))
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
