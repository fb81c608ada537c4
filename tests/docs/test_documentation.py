"""The documentation is tested: every TOML block in the guides loads with the loader its reader would use,
and every command a user is told to type is run by a test or CI script, or is marked as needing what this
machine does not have (``# needs hardware``: a radio, a Pi; ``# needs systemd``: a booted system).
Blocks indented inside list items count as well; a fence the scanner could only misread is refused.

COMMANDS maps each documented command to the file that runs it and a fragment of that file that shows
it does; a new command in a guide fails here until it is mapped or marked, and so does a mapping whose
command left the guides or whose runner no longer runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.postgres import Cluster

from agent import signing_keys
from agent.config import ConfigError, config_from_dict, sync_settings, wearable_settings
from agent.server.config import backend_config_from_dict
from agent.testbed.pki import make_ca

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ("README.md", "hw/README.md", "systemd/README.md")
MARKER = re.compile(r"#\s*needs (hardware|systemd)\b")
# A fenced block, at the left margin or indented (inside a list item): it closes at its own indentation.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
FENCE_LINE = re.compile(r"^[ \t]*```", re.M)
# Shell spellings this test would not read as commands: a guide says ```sh, or its commands go unchecked.
OTHER_SHELLS = frozenset({"bash", "shell", "console", "zsh", "shell-session"})


@dataclass(frozen=True)
class Block:
    guide: str
    lang: str
    line: int
    text: str


class GuideError(ValueError):
    """A guide's fenced block this test cannot check as written (one line: guide, line, what to change)."""


def fenced_blocks(guide: str, text: str) -> list[Block]:
    """Every fenced block of ``text``, indented ones dedented by their fence's indentation. Refused: a
    fence that closes nothing (open and close at different indentations), a body line indented less than
    its fence, a shell block not spelled ``sh``."""
    found = []
    for m in FENCE.finditer(text):
        line = text[: m.start()].count("\n") + 1
        indent, body = m["indent"], m["body"]
        short = [i for i, b in enumerate(body.splitlines()) if b.strip() and not b.startswith(indent)]
        if short:
            raise GuideError(f"{guide}:{line + 1 + short[0]}: indented less than its block's fence at line {line}")
        if m["lang"] in OTHER_SHELLS:
            raise GuideError(f"{guide}:{line}: a ```{m['lang']} block: write ```sh so its commands are checked")
        dedented = "".join(b[len(indent) :] for b in body.splitlines(keepends=True))
        found.append(Block(guide, m["lang"], line, dedented))
    paired = {text[: m.start()].count("\n") for m in FENCE.finditer(text)}
    paired |= {text[: m.end()].count("\n") for m in FENCE.finditer(text)}
    stray = [n for f in FENCE_LINE.finditer(text) if (n := text[: f.start()].count("\n")) not in paired]
    if stray:
        raise GuideError(f"{guide}:{stray[0] + 1}: a fence that opens or closes no block (mismatched indentation?)")
    return found


def blocks(lang: str) -> list[Block]:
    return [b for guide in GUIDES for b in fenced_blocks(guide, (ROOT / guide).read_text()) if b.lang == lang]


# (guide, the block's first line) -> the loader its reader uses.
TOML_BLOCKS = {
    ("hw/README.md", "[agent]"): "agent",
    ("hw/README.md", "[wearable]"): "wearable",
    ("systemd/README.md", "[server]"): "backend",
    ("systemd/README.md", "[portal]"): "backend",
}

# command (as documented, without its trailing comment) -> (the file that runs it, a fragment showing it does).
COMMANDS = {
    "sudo apt-get update && sudo apt-get install -y python3-venv dbus bluez && python3 -m venv .venv && "
    ".venv/bin/pip install -e '.[plot]' && .venv/bin/proxitrace start": (
        # `start` with no radio runs `testbed sim --quick` for all three schemes; the test runs that per scheme.
        "tests/testbed/test_testbed_sim.py",
        "quick=True",
    ),
    "sudo apt-get update && sudo apt-get install -y python3-venv dbus chromium chromium-driver nginx-light "
    "postgresql && "
    "python3 -m venv .venv && "
    ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest": (".ci/run", "'^sudo .*# tests$'"),
    "sudo apt-get update && sudo apt-get install -y dpkg-dev debhelper dh-virtualenv python3-venv && hw/build-deb": (
        "hw/deb-check",
        '"$repo/hw/build-deb" --fast --out',
    ),
    ".venv/bin/python -m pytest": (".ci/run", "'^sudo .*# tests$'"),
    ".venv/bin/ruff check .": (".ci/run", "ruff check ."),
    ".venv/bin/python tests/bench/bench_schemes.py": ("tests/docs/test_documentation.py", '"bench_schemes.py"'),
    ".venv/bin/python tests/bench/bench_backend_workers.py --quick": (
        "tests/docs/test_documentation.py",
        '"bench_backend_workers.py", "--quick"',
    ),
    "hw/vm/run python -m pytest -m bluez": (".ci/run", "hw/vm/run python -m pytest -m bluez"),
    "sudo apt-get install -y ./proxitrace_*.deb": (
        "hw/deb-check",
        'apt-get install -y -q "$work"/old/proxitrace_*.deb',
    ),
    "sudo apt-get install -y ./proxitrace_*.deb ./proxitrace-backend_*.deb": (
        "hw/deb-check",
        '"$work"/old/proxitrace-backend_*.deb',
    ),
    "proxitrace config show": ("hw/deb-check", "proxitrace --config /etc/proxitrace/config.toml config show"),
    "sudo -u proxitrace-backend proxitrace backend keygen": (
        "hw/deb-check",
        "runuser -u proxitrace-backend -- proxitrace backend keygen",
    ),
    "sudo -u proxitrace-backend proxitrace backend enrol issue --count 50 --url https://backend.example "
    "--ca /etc/ssl/proxitrace/ca.pem --out /var/lib/proxitrace-backend/bundles": (
        "tests/packaging/test_nginx_tls.py",
        '"--ca"',
    ),
    "proxitrace backend officer add NAME --config /etc/proxitrace/backend.toml": (
        "tests/portal/test_portal_cli.py",
        '"officer", "add"',
    ),
    "proxitrace backend officer token NAME --config /etc/proxitrace/backend.toml": (
        "tests/portal/test_portal_cli.py",
        '"officer", "token"',
    ),
    "proxitrace backend officer disable NAME --config /etc/proxitrace/backend.toml": (
        "tests/portal/test_portal_cli.py",
        '"officer", "disable"',
    ),
    "proxitrace backend officer reset NAME --config /etc/proxitrace/backend.toml": (
        "tests/portal/test_portal_cli.py",
        '"officer", "reset"',
    ),
    "proxitrace testbed trace-from-capture hci0.snoop hci1.snoop hci2.snoop --positions positions.csv "
    "--out bench.csv": ("tests/testbed/test_bench_trace.py", '"trace-from-capture"'),
    "proxitrace testbed replay bench.csv --report bench-report": (
        "tests/testbed/test_bench_trace.py",
        '"replay", str(out), "--report"',
    ),
    "proxitrace testbed fit-calibration bench.csv --reference usb:0a12:0001 --write hw/calibration.toml": (
        "tests/testbed/test_fit_calibration.py",
        '"fit-calibration", str(trace), "--reference", "usb:0a12:0001", "--write"',
    ),
    "proxitrace status --brief": ("tests/test_status.py", '"status", "--brief"'),
    "proxitrace backend tan issue --report-type self-report --onset 2025-11-21 --config /etc/proxitrace/backend.toml": (
        "tests/sync/test_sync_cli.py",
        '"--report-type", "self-report", "--onset"',
    ),
    "proxitrace report --tan XXXX-XXXX-XXXX --onset 2025-11-20": (
        "tests/sync/test_sync_cli.py",
        '"report", "--tan", tan, "--onset", mine',
    ),
    "proxitrace backend serve --workers 4 --config /etc/proxitrace/backend.toml": (
        "tests/server/test_server_workers.py",
        '"--workers", "2"',
    ),
    "sudo proxitrace provision device-0001.proxitrace.toml": (
        "tests/provision/test_provision_round_trip.py",
        '"provision", str(bundles[0])',
    ),
}


def documented_commands() -> list[tuple[Block, str, bool]]:
    """(block, command, marked) for each command line of each sh block."""
    out = []
    for block in blocks("sh"):
        for line in block.text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            command = re.sub(r"\s+#.*$", "", line).strip()
            out.append((block, command, bool(MARKER.search(line))))
    return out


def test_every_toml_block_is_mapped_to_a_loader() -> None:
    found = {(b.guide, b.text.splitlines()[0].strip()) for b in blocks("toml")}
    assert found == set(TOML_BLOCKS)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "backend-public.pem"
    path.parent.mkdir()
    path.write_text(signing_keys.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
    shutil.copy(make_ca(path.parent / "pki").ca_file, path.parent / "backend-ca.pem")  # the guide's ca_file
    return path


@pytest.mark.parametrize("block", blocks("toml"), ids=lambda b: f"{b.guide}:{b.line}")
def test_toml_block_loads(block: Block, key_file: Path) -> None:
    loader = TOML_BLOCKS[(block.guide, block.text.splitlines()[0].strip())]
    if loader == "agent":
        # The files the guide names live under /etc/proxitrace on the device; here under a temporary folder.
        raw = tomllib.loads(block.text.replace("/etc/proxitrace/", f"{key_file.parent}/"))
        settings = sync_settings(config_from_dict(raw))
        assert settings.public_key is not None and settings.public_key.public_numbers() == (
            signing_keys.load_public_key(key_file).public_numbers()
        )
    elif loader == "wearable":
        settings = wearable_settings(config_from_dict(tomllib.loads(block.text)))
        assert settings is not None and settings.chip is not None and settings.tan_dir is not None
    else:
        backend_config_from_dict(tomllib.loads(block.text))


def test_a_key_path_that_is_missing_is_named_as_a_file() -> None:
    """The hw/README block as written, on a machine without the key file: the path is taken as one."""
    block = next(b for b in blocks("toml") if b.guide == "hw/README.md")
    config = config_from_dict(tomllib.loads(block.text))
    with pytest.raises(ConfigError) as err:
        sync_settings(config)
    assert str(err.value) == "backend.public_key: /etc/proxitrace/backend-public.pem: no such key file"


def test_every_command_is_run_by_a_test_or_marked() -> None:
    unaccounted = [
        f"{block.guide}:{block.line}: {command}"
        for block, command, marked in documented_commands()
        if not marked and command not in COMMANDS
    ]
    assert unaccounted == [], "map these in COMMANDS or mark them # needs hardware / # needs systemd"


def test_every_mapped_command_is_documented_and_its_runner_runs_it() -> None:
    documented = {command for _, command, _ in documented_commands()}
    assert sorted(set(COMMANDS) - documented) == []
    for command, (runner, fragment) in COMMANDS.items():
        path = ROOT / runner
        assert path.is_file(), (command, runner)
        assert fragment in path.read_text(), (command, runner, fragment)


def test_bench_schemes_runs_as_documented() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench" / "bench_schemes.py"), "--keys", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0 and "dp3t" in out.stdout.lower(), out.stderr


def test_bench_backend_workers_runs_as_documented(postgres_cluster: Cluster) -> None:
    """``--quick`` with smaller numbers still: the bench starts its own cluster (the fixture stands for
    PostgreSQL being installed: it fails in CI without it and skips elsewhere)."""
    tiny = ["--devices", "2000", "--seconds", "1", "--multiples", "10", "--capacity-requests", "40"]
    tiny += ["--publish-keys", "2000", "--no-dummy-mix"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench" / "bench_backend_workers.py"), "--quick", *tiny],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["sample"]["row_shapes"] == result["sample"]["bulk_row_shapes"]
    assert result["list_publish"]["files"] == 1 and result["list_publish"]["keys"] == 2000
    for workers in ("workers_1", "workers_2"):
        [run] = result[workers]["agent_defaults"]["runs"]
        assert run["errors"] == 0 and run["endpoints"]["health_get"]["requests"] > 0, run
        capacity = result[workers]["capacity"]
        assert capacity["status_poll"]["count"] == 40  # bulk-loaded devices' polls, each answered 200
        assert capacity["health_get"]["ratio_to_health"] == 1.0


def test_indented_blocks_are_found_and_bad_fences_refused() -> None:
    """Blocks inside list items are checked like the others (dedented by their fence); what the scanner
    could only misread is refused in one line naming the guide's line."""
    text = "1. Install:\n\n   ```sh\n   proxitrace start\n   ```\n\n```toml\n[agent]\n```\n"
    found = fenced_blocks("g.md", text)
    assert [(b.lang, b.line, b.text) for b in found] == [("sh", 3, "proxitrace start\n"), ("toml", 7, "[agent]\n")]
    refused = {
        "   ```sh\n   proxitrace start\n```\n": "g.md:1: a fence that opens or closes no block",
        "   ```sh\n   ok\n  short\n   ```\n": "g.md:3: indented less than its block's fence at line 1",
        "```bash\nproxitrace start\n```\n": "g.md:1: a ```bash block: write ```sh",
    }
    for bad, message in refused.items():
        with pytest.raises(GuideError) as err:
            fenced_blocks("g.md", bad)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
