"""Transport: `proxitrace backend serve` speaks TLS from its configured certificate, agents pin its CA, and
plain http:// leaves the machine only when a setting named for the lab says so (then status and doctor warn).

Real TLS on 127.0.0.1 with a CA made in the test; the commands run as subprocesses, as people run them."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent import signing_keys
from agent.config import ConfigError, config_from_dict, sync_settings
from agent.keys import KeyRing
from agent.schemes.base import SchemeName
from agent.server.config import backend_config_from_dict
from agent.status import AgentStatus, write_status
from agent.store import Store
from agent.testbed.pki import CaFiles, make_ca

# The CLI with a Python audit hook (PEP 578) that appends every name lookup and every IP connection it
# attempts to the file named by its first argument: what it tried on the network, seen rather than timed.
WATCHED = """
import sys
log = sys.argv.pop(1)
def watch(event, args):
    if event == "socket.getaddrinfo" or (event == "socket.connect" and isinstance(args[1], tuple)):
        with open(log, "a") as f:
            f.write(f"{event} {args[0] if event == 'socket.getaddrinfo' else args[1][0]}\\n")
sys.addaudithook(watch)
from agent.cli import main
main()
"""
HANG_SECONDS = 120  # only against a hang; what a command did is asserted, never how long it took


def proxitrace(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout)


def watched(log: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The CLI's result and the network attempts it made (lookups and IP connections, in order)."""
    log.write_text("")
    command = [sys.executable, "-c", WATCHED, str(log), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=HANG_SECONDS)
    return result, log.read_text().splitlines()


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's failure as people see it: exit 1, one line on stderr, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@dataclass
class TlsBackend:
    url: str
    public_key: str
    ca: CaFiles
    config: Path


@pytest.fixture
def tls_backend(tmp_path: Path) -> Iterator[TlsBackend]:
    ca = make_ca(tmp_path / "pki")
    config = tmp_path / "backend.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp_path / "backend"}"\n'
        f'tls_cert_file = "{ca.cert_file}"\ntls_key_file = "{ca.key_file}"\n'
        "[upload]\nmin_response_seconds = 0\n"
    )
    keygen = proxitrace("backend", "keygen", "--config", str(config))
    public = re.search(r'public_key = "([^"]+)"', keygen.stdout)
    assert keygen.returncode == 0 and public, keygen.stderr
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    url = ""
    for line in server.stderr:
        found = re.search(r"listening on (https://127\.0\.0\.1:\d+)", line)
        if found:
            url = found[1]
            break
    try:
        assert url, "the backend did not start with TLS"
        yield TlsBackend(url, public[1], ca, config)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)


def agent_config(path: Path, url: str, public_key: str = "", extra: str = "") -> Path:
    path.write_text(
        f'[agent]\nscheme = "gaen"\n'
        f'accept_unsynchronised_clock_testbed = true\n[backend]\nurl = "{url}"\npublic_key = "{public_key}"\n{extra}'
    )
    return path


def test_the_agent_reports_and_syncs_over_https_with_the_pinned_ca(tls_backend: TlsBackend, tmp_path: Path) -> None:
    conf = agent_config(
        tmp_path / "a.toml", tls_backend.url, tls_backend.public_key, f'ca_file = "{tls_backend.ca.ca_file}"\n'
    )
    state = tmp_path / "a"
    store = Store.open(state)
    KeyRing(store, SchemeName.GAEN).ensure(time.time() - 3600)
    store.close()
    tan = proxitrace("backend", "tan", "issue", "--config", str(tls_backend.config))
    assert tan.returncode == 0, tan.stderr
    sent = proxitrace("--config", str(conf), "--state-dir", str(state), "report", "--tan", tan.stdout.strip(), "--yes")
    assert sent.returncode == 0 and "report sent" in sent.stdout, sent.stderr
    synced = proxitrace("--config", str(conf), "--state-dir", str(state), "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["scheme"] == "gaen"


def test_a_server_certificate_from_another_ca_is_refused(tls_backend: TlsBackend, tmp_path: Path) -> None:
    other = make_ca(tmp_path / "other", "other")
    for extra in (f'ca_file = "{other.ca_file}"\n', ""):  # another CA pinned; the system store
        conf = agent_config(tmp_path / "b.toml", tls_backend.url, tls_backend.public_key, extra)
        result = proxitrace("--config", str(conf), "--state-dir", str(tmp_path / "b"), "sync")
        assert "TLS certificate not trusted" in one_line_error(result)


def test_the_network_watch_sees_a_connection_attempt(tmp_path: Path) -> None:
    """The watch below can fail: plain http to loopback is allowed, and the refused connection is seen."""
    key = signing_keys.public_key_base64(ec.generate_private_key(ec.SECP256R1()).public_key())
    conf = agent_config(tmp_path / "l.toml", "http://127.0.0.1:1", key)  # port 1: nothing listens, refused at once
    result, attempts = watched(tmp_path / "net.log", "--config", str(conf), "--state-dir", str(tmp_path / "l"), "sync")
    assert result.returncode == 1, result.stderr
    assert "socket.connect 127.0.0.1" in attempts, attempts


def test_http_to_another_host_is_refused_before_any_connection(tmp_path: Path) -> None:
    conf = agent_config(tmp_path / "c.toml", "http://192.0.2.7:8080")  # TEST-NET-1: nothing answers there
    args = ("--config", str(conf), "--state-dir", str(tmp_path / "c"))
    result, attempts = watched(tmp_path / "net.log", *args, "sync")
    line = one_line_error(result)
    assert attempts == []  # no lookup, no connection: refused from the configuration alone
    assert (
        line.startswith("proxitrace: backend.url: http:// to 192.0.2.7") and "backend.allow_insecure_http_lab" in line
    )
    daemon, attempts = watched(tmp_path / "net.log", *args, "run")
    assert one_line_error(daemon) == line and attempts == []  # the daemon refuses at start, before any request
    with pytest.raises(ConfigError, match=r"^backend.key_server_index_url: http:// to keys.example"):
        sync_settings(
            config_from_dict({"backend": {"url": "https://b.example", "key_server_index_url": "http://keys.example/i"}})
        )
    peer = {"country_code": 2, "url": "http://peer.example", "secret": "s" * 16}
    federation = {"key": "00" * 16, "peers": [peer]}
    with pytest.raises(ConfigError, match=r"^federation.peers\[0\].url: http:// to peer.example"):
        backend_config_from_dict({"federation": federation})
    allowed = backend_config_from_dict({"federation": {**federation, "allow_insecure_http_lab": True}})
    assert allowed.federation.peers[0].url == "http://peer.example"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.3.2.1", "http://localhost:1", "http://[::1]:80"])
def test_loopback_may_be_plain_http(url: str) -> None:
    assert sync_settings(config_from_dict({"backend": {"url": url}})).base_url == url


def test_the_lab_setting_allows_http_and_status_and_doctor_warn(tmp_path: Path) -> None:
    conf = agent_config(tmp_path / "d.toml", "http://192.0.2.7:8080", extra="allow_insecure_http_lab = true\n")
    assert sync_settings(config_from_dict({"backend": {"url": "http://192.0.2.7", "allow_insecure_http_lab": True}}))
    state = tmp_path / "d"
    state.mkdir(mode=0o700)
    now = time.time()
    write_status(state, AgentStatus(os.getpid(), now, now, "gaen", True, 1.0, 0, 0.0, 0, 0, None, None, "none"))
    status = proxitrace("--config", str(conf), "--state-dir", str(state), "status")
    assert status.returncode == 0, status.stderr
    assert "warning: backend.allow_insecure_http_lab is on: http://192.0.2.7:8080 is plain http" in status.stderr
    doctor = proxitrace("--config", str(conf), "--state-dir", str(state), "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["transport"]["status"] == "warning"
    assert "allow_insecure_http_lab is on" in checks["transport"]["detail"]
    plain = agent_config(tmp_path / "e.toml", "https://backend.example")
    quiet = proxitrace("--config", str(plain), "--state-dir", str(state), "doctor", "--json")
    assert "transport" not in {c["name"] for c in json.loads(quiet.stdout)["checks"]}
    assert (
        "allow_insecure_http_lab" not in proxitrace("--config", str(plain), "--state-dir", str(state), "status").stderr
    )


def test_an_unreadable_ca_file_is_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    conf = agent_config(tmp_path / "f.toml", "https://127.0.0.1:9", extra=f'ca_file = "{bad}"\n')
    line = one_line_error(proxitrace("--config", str(conf), "--state-dir", str(tmp_path / "f"), "sync"))
    assert line.startswith(f"proxitrace: backend.ca_file: cannot load {bad}")
