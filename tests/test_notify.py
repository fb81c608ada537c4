import stat
import subprocess
import sys
from pathlib import Path

from agent.notify import run_hook


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "hook"
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_hook_gets_only_the_event_and_day_count(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    hook = script(tmp_path, f"import os; open({str(out)!r}, 'w').write(repr(sorted(os.environ)))")
    result = await run_hook(f"{hook} --quiet", "exposed", 2)
    assert result.ran and result.returncode == 0
    names = eval(out.read_text())
    assert [n for n in names if n.startswith("PROXITRACE")] == ["PROXITRACE_DAYS_EXPOSED", "PROXITRACE_EVENT"]
    assert set(names) <= {"PATH", "PROXITRACE_EVENT", "PROXITRACE_DAYS_EXPOSED", "LC_CTYPE"}


async def test_failing_slow_or_missing_hooks_are_reported_not_raised(tmp_path: Path) -> None:
    assert (await run_hook(script(tmp_path, "raise SystemExit(3)"), "exposed", 1)).returncode == 3
    slow = await run_hook(script(tmp_path, "import time; time.sleep(30)"), "exposed", 1, timeout=0.5)
    assert slow.timed_out and slow.ran
    missing = await run_hook(str(tmp_path / "nope"), "exposed", 1)
    assert not missing.ran and missing.error
    assert not (await run_hook("", "exposed", 1)).ran
    assert (await run_hook('"unbalanced', "exposed", 1)).error


def test_example_gpio_hook_is_a_valid_shell_script() -> None:
    hook = Path(__file__).resolve().parent.parent / "hw" / "hooks" / "gpio-alert"
    assert subprocess.run(["sh", "-n", str(hook)]).returncode == 0
    assert hook.stat().st_mode & stat.S_IXUSR


async def test_hook_gets_the_brief_status_facts_beside_the_event(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    hook = script(tmp_path, f"import os; open({str(out)!r}, 'w').write(repr(dict(os.environ)))")
    facts = {"PROXITRACE_STATE": "needs-attention", "PROXITRACE_WHY": "no-adapter", "HOME": "/root"}
    result = await run_hook(hook, "state", 0, facts={**facts, "PROXITRACE_EVENT": "forged"})
    assert result.ran and result.returncode == 0
    env = eval(out.read_text())
    assert env["PROXITRACE_EVENT"] == "state"  # the facts never override the event
    assert (env["PROXITRACE_STATE"], env["PROXITRACE_WHY"]) == ("needs-attention", "no-adapter")
    assert "HOME" not in env  # only PROXITRACE_* facts pass
