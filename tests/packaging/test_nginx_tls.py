"""The shipped nginx site in front of a real backend: TLS with a certificate from a CA made here, agents
pinning that CA, a report and a sync through it, and a device provisioned and registered through it.

nginx and the backend listen on 127.0.0.1 only; the site file is the shipped one with only its listen
address, upstream port and certificate paths pointed at this test's.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.backend_harness import heard

from agent.clock import AcceleratedClock
from agent.keys import KeyRing
from agent.schemes.base import SchemeName
from agent.server.config import backend_config_from_dict
from agent.store import Store

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "systemd" / "nginx-proxitrace.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DAY = 86_400
pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (apt-get install nginx-light)")


def proxitrace(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for 127.0.0.1 and localhost: (ca.pem, server.crt, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Proxitrace test CA"))
        .issuer_name(_name("Proxitrace test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("backend.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.crt", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def site_for_test(tls_port: int, backend_port: int, cert: Path, key: Path) -> str:
    """The shipped site, with only what must differ here changed; each replacement must find its target."""
    text = SITE.read_text()
    for old, new in (
        ("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{backend_port};"),
        ("/etc/ssl/proxitrace/backend.crt", str(cert)),
        ("/etc/ssl/proxitrace/backend.key", str(key)),
    ):
        assert old in text, f"the shipped site no longer has {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Proxied:
    url: str
    ca: Path
    backend_toml: Path
    public_key_file: Path
    clock: AcceleratedClock


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Proxied]:
    ca, cert, key = make_pki(tmp_path)
    midnight = (int(time.time()) // DAY) * DAY
    clock = AcceleratedClock(start=midnight + 20 * 3600, speed=3600.0)
    backend_port, tls_port = free_port(), free_port()
    backend_toml = tmp_path / "backend.toml"
    backend_toml.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {backend_port}\ntrust_forwarded_for = true\n'
        f'data_dir = "{tmp_path / "backend"}"\nclock = "{clock.spec()}"\n'
        "[ebid]\npow_difficulty = 8\nchallenge_ttl_seconds = 86400\n"
        "[upload]\nmin_response_seconds = 0.2\ntoken_ttl_seconds = 86400\n"
    )  # TTLs of a simulated day: at 3600x the default 600 s challenge lives 0.17 real seconds, less than a
    # loaded machine takes from the challenge to the registration
    backend_config_from_dict({"server": {"host": "127.0.0.1", "port": backend_port}})
    keygen = proxitrace("backend", "keygen", "--config", str(backend_toml))
    assert keygen.returncode == 0, keygen.stderr
    public_key_file = tmp_path / "backend-public.pem"
    public_key_file.write_text(keygen.stdout[: keygen.stdout.index("-----END PUBLIC KEY-----") + 24] + "\n")

    # No --host/--port: the [server] keys decide where it listens.
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(backend_toml)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stderr is not None
    announced = next(m[1] for line in server.stderr if (m := re.search(r"listening on (http://\S+)", line)))
    assert announced == f"http://127.0.0.1:{backend_port}"

    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "site.conf").write_text(site_for_test(tls_port, backend_port, cert, key))
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
        f"  fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n"
        f"  include {prefix}/site.conf;\n}}\n"
    )
    check = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    nginx = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield Proxied(f"https://127.0.0.1:{tls_port}", ca, backend_toml, public_key_file, clock)
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=15)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)


def agent_config(tmp: Path, name: str, p: Proxied, scheme: str, ca: bool = True) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f'[agent]\nscheme = "{scheme}"\nclock = "{p.clock.spec()}"\n'
        f'[backend]\nurl = "{p.url}"\npublic_key = "{p.public_key_file}"\n' + (f'ca_file = "{p.ca}"\n' if ca else "")
    )
    return path


def test_report_and_sync_through_nginx_with_the_ca_pinned(tmp_path: Path, proxied: Proxied) -> None:
    a_conf, b_conf = agent_config(tmp_path, "a", proxied, "gaen"), agent_config(tmp_path, "b", proxied, "gaen")
    a_state, b_state = tmp_path / "a", tmp_path / "b"
    contact = proxied.clock.now() - 29 * 3600  # yesterday 15:00, simulated
    store_a, store_b = Store.open(a_state), Store.open(b_state)
    ring = KeyRing(store_a, SchemeName.GAEN)
    ring.ensure(contact)
    store_b.add_windows(heard(ring.scheme(), contact, minutes=20))
    store_a.close()
    store_b.close()

    tan = proxitrace("backend", "tan", "issue", "--config", str(proxied.backend_toml), "--valid", "2d").stdout.strip()
    sent = proxitrace("--config", str(a_conf), "--state-dir", str(a_state), "report", "--tan", tan, "--yes")
    assert sent.returncode == 0 and "report sent" in sent.stdout, sent.stderr
    outcome: dict[str, object] = {}
    for _ in range(20):  # the release bucket closes a few real seconds after the start
        result = proxitrace("--config", str(b_conf), "--state-dir", str(b_state), "sync", "--json")
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        if outcome["notify"]:
            break
        time.sleep(0.5)
    assert outcome["notify"] is True and outcome["matched_keys"] == 1


def test_without_the_pinned_ca_the_certificate_is_refused(tmp_path: Path, proxied: Proxied) -> None:
    conf = agent_config(tmp_path, "c", proxied, "gaen", ca=False)
    result = proxitrace("--config", str(conf), "--state-dir", str(tmp_path / "c"), "sync")
    assert result.returncode == 1 and "TLS certificate not trusted (backend.ca_file" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_ca_file_is_one_line_naming_the_key(tmp_path: Path, proxied: Proxied) -> None:
    conf = agent_config(tmp_path, "d", proxied, "gaen")
    conf.write_text(conf.read_text().replace(str(proxied.ca), str(tmp_path / "missing.pem")))
    result = proxitrace("--config", str(conf), "--state-dir", str(tmp_path / "d"), "sync")
    assert result.returncode == 1 and f"backend.ca_file: {tmp_path / 'missing.pem'}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_bundles_pin_the_ca_and_register_through_nginx(tmp_path: Path, proxied: Proxied) -> None:
    out = tmp_path / "bundles"
    issued = proxitrace(
        "backend", "enrol", "issue", "--config", str(proxied.backend_toml), "--count", "1",
        "--url", proxied.url, "--ca", str(proxied.ca), "--out", str(out),
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    etc = tmp_path / "etc"
    bundle = out / "device-0001.proxitrace.toml"
    done = proxitrace("--state-dir", str(tmp_path / "dev"), "provision", str(bundle), "--etc-dir", str(etc),
                      "--no-register")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (etc / "backend-ca.pem").read_bytes() == proxied.ca.read_bytes()
    # The backend runs on the test's accelerated clock and signs its answers with that time; the device
    # must share it (a real device and backend share real time), or it rightly refuses them as not fresh.
    config = (etc / "config.toml").read_text().replace('clock = "system"', f'clock = "{proxied.clock.spec()}"', 1)
    (etc / "config.toml").write_text(config)
    code = tomllib.loads(bundle.read_text())["enrolment_code"]
    registered = proxitrace("--config", str(etc / "config.toml"), "--state-dir", str(tmp_path / "dev"), "register",
                            "--code", code)  # fmt: skip
    assert registered.returncode == 0 and "registered (country code 1)" in registered.stdout, registered.stderr
    check = proxitrace("--config", str(etc / "config.toml"), "--state-dir", str(tmp_path / "dev"), "status-check")
    assert check.returncode == 0 and check.stdout.startswith("not at risk"), check.stderr
    assert re.search(r'ca_file = ".*backend-ca.pem"', (etc / "config.toml").read_text())
