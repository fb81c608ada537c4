"""The threat model (systemd/SECURITY.md, issue 13 item 8) names, for each claim, the test that covers it:
every test it names must exist, so a claim cannot outlive its test, and each party it promises to cover
has its section."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from agent.ble.scanner import FLOOD_GROWTH_BOUND_BYTES, MAX_DEVICES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "systemd" / "SECURITY.md"
CITED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_the_threat_model_cites_exists() -> None:
    cited = CITED.findall(DOC.read_text())
    assert len(cited) >= 10
    missing = [
        f"{path}::{name}" if name else path
        for path, name in cited
        if not (ROOT / path).is_file() or (name and name not in _functions(ROOT / path))
    ]
    assert not missing, f"systemd/SECURITY.md cites tests that do not exist: {missing}"


def test_the_threat_model_covers_each_party() -> None:
    text = DOC.read_text()
    for party in ("Device", "Backend operator", "Network observer", "nearby radio", "out of scope"):
        assert party.lower() in text.lower(), party


def test_the_flood_bound_it_states_is_the_scanners() -> None:
    """The numbers are copied into prose, so a changed constant must fail here rather than leave the doc wrong."""
    text = " ".join(DOC.read_text().split())
    kept = re.search(r"keeps the ([\d,]+) devices heard most recently", text)
    bound = re.search(r"grows the daemon by at most (\d+) MB", text)
    assert kept and bound, "systemd/SECURITY.md no longer states the flood bound"
    assert int(kept.group(1).replace(",", "")) == MAX_DEVICES
    assert int(bound.group(1)) == round(FLOOD_GROWTH_BOUND_BYTES / 1e6)
