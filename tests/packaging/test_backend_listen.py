"""[server] host/port decide where `proxitrace backend serve` listens; --host/--port override them; bad
values stop it with one line naming the key."""

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(config: Path, *extra: str) -> str:
    """Start the backend, return the address it announces, stop it."""
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config), *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if m := re.search(r"listening on (http://\S+)", line):
                return m[1]
        raise AssertionError("the backend did not start")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)


def test_config_port_is_used_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    config = tmp_path / "backend.toml"
    config.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\ndata_dir = "{tmp_path / "data"}"\n')
    keygen = [sys.executable, "-m", "agent", "backend", "keygen", "--config", str(config)]
    assert subprocess.run(keygen, capture_output=True, timeout=60).returncode == 0
    assert serve(config) == f"http://127.0.0.1:{port}"
    assert serve(config, "--port", str(other)) == f"http://127.0.0.1:{other}"


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("port = 70000", "server.port: must be between 0 and 65535, got 70000"),
        ('host = ""', "server.host: an address or host name to listen on, got ''"),
        ('port = "8080"', "server.port: expected an integer"),
    ],
)
def test_bad_listen_settings_are_one_line(tmp_path: Path, server: str, message: str) -> None:
    config = tmp_path / "backend.toml"
    config.write_text(f'[server]\n{server}\ndata_dir = "{tmp_path / "data"}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
