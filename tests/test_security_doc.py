"""The threat model (systemd/SECURITY.md, issue 13 item 8) names, for each claim, the test that covers it:
every test it names must exist, so a claim cannot outlive its test, and each party it promises to cover
has its section."""

from __future__ import annotations

import ast
import re
from pathlib import Path

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
