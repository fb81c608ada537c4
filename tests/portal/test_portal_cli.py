"""`proxitrace backend serve` with and without an officer (subprocesses, as an operator runs it) and
`proxitrace backend officer …` (through click's runner: the same command, without a process start each)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from agent.cli import cli


def proxitrace(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process; the same exit code, stdout and stderr as the command line."""
    result = CliRunner().invoke(cli, list(args), prog_name="proxitrace")
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def serve_log(toml: Path) -> str:
    """Start `backend serve`, wait until it listens, stop it; its log."""
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(toml), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    lines = []
    for line in server.stderr:
        lines.append(line)
        if "proxitrace backend listening on" in line:
            break
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=15) == 0, "".join(lines)
    return "".join(lines) + server.stderr.read()


def test_serve_without_an_officer_says_how_to_add_one_and_officer_commands_work(tmp_path: Path) -> None:
    toml = tmp_path / "backend.toml"
    toml.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    assert proxitrace("backend", "keygen", "--config", str(toml)).returncode == 0
    log = serve_log(toml)
    command = f"proxitrace backend officer add NAME --config {toml}"
    hints = [line for line in log.splitlines() if "no officer account yet" in line]
    assert len(hints) == 1 and hints[0].startswith("WARNING ")
    assert hints[0].endswith(f"portal: no officer account yet; add one with: {command}")

    added = proxitrace("backend", "officer", "add", "ann", "--config", str(toml))  # the command the hint gives
    assert added.returncode == 0, added.stderr
    assert re.search(r"^password: \S{16,}$", added.stdout, re.M)
    assert re.search(r"^totp uri: otpauth://totp/Proxitrace%20portal:ann\?secret=[A-Z2-7]+&issuer=", added.stdout, re.M)
    assert "no officer account yet" not in serve_log(toml)

    plain = proxitrace("backend", "officer", "add", "bob", "--no-totp", "--config", str(toml))
    assert plain.returncode == 0 and "totp" not in plain.stdout
    again = proxitrace("backend", "officer", "add", "bob", "--config", str(toml))
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert again.stderr.endswith("officer 'bob' exists (use `reset` for new credentials)\n")
    token = proxitrace("backend", "officer", "token", "bob", "--config", str(toml))
    assert token.returncode == 0 and re.fullmatch(r"pto_[A-Za-z0-9_-]{40,}\n", token.stdout)
    assert proxitrace("backend", "officer", "disable", "bob", "--config", str(toml)).returncode == 0
    listing = proxitrace("backend", "officer", "list", "--config", str(toml))
    assert listing.stdout.splitlines() == ["ann\tenabled\ttotp", "bob\tdisabled\tpassword only"]
    reset = proxitrace("backend", "officer", "reset", "bob", "--no-totp", "--config", str(toml))
    assert reset.returncode == 0 and "password: " in reset.stdout and "totp" not in reset.stdout
    with_qr = proxitrace("backend", "officer", "reset", "ann", "--qr", "--config", str(toml))
    picture = [line for line in with_qr.stdout.splitlines() if set(line) <= set("█▀▄ ")]
    assert with_qr.returncode == 0 and len(picture) > 10 and len({len(line) for line in picture}) == 1
    assert "bob\tenabled" in proxitrace("backend", "officer", "list", "--config", str(toml)).stdout
    missing = proxitrace("backend", "officer", "disable", "carol", "--config", str(toml))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no officer 'carol'" in missing.stderr
