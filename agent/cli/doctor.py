"""``proxitrace doctor``: the machine checks a field engineer runs first."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict

import click

from agent.cli.context import CliContext, lab_warning
from agent.clock import SystemClock
from agent.doctor import diagnose, gather_facts, render


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_obj
def doctor(obj: CliContext, as_json: bool) -> None:
    """Check BlueZ, the kernel, adapters, privacy, the clock and the state dir; exit 1 on any error."""
    facts = asyncio.run(gather_facts(obj.state_dir, SystemClock().now(), transport_warning=lab_warning(obj)))
    checks = diagnose(facts)
    if as_json:
        click.echo(json.dumps({"checks": [asdict(c) for c in checks], "facts": asdict(facts)}, indent=2))
    else:
        click.echo(render(checks))
    sys.exit(1 if any(c.status == "error" for c in checks) else 0)
