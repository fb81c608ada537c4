"""``proxitrace sync``, ``register``, ``report`` and ``status-check``: the backend by hand.

The daemon runs the same client on its own schedule; these commands are for a field engineer, a test-bed
operator or a person reporting a diagnosis, so they show progress, say what will be sent and ask first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import click

from agent.calibration import CalibrationError
from agent.cli.context import CliContext
from agent.clock import Clock, clock_from_spec, date_to_day, day_to_iso
from agent.config import AgentConfig, ConfigError, device_calibration, load_config, risk_settings, sync_settings
from agent.keys import KeyRing
from agent.protocol.wire import TanGrant
from agent.schemes.base import SchemeName
from agent.store import Store, StoreError
from agent.sync import SyncError, SyncService, open_session, reported_onset

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=15)


class _Bar:
    """A click progress bar per download (or per proof of work), created once the total is known."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int | None) -> None:
        if self._bar is not None and done < self._done:
            self.close()
        if self._bar is None:
            if not total:
                return
            self._bar = click.progressbar(length=total, label=self._label, file=click.get_text_stream("stderr"))
            self._bar.__enter__()
            self._done = 0
        self._bar.update(max(0, min(done, self._bar.length) - self._done))
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@dataclass(frozen=True)
class _Env:
    config: AgentConfig
    client: SyncService
    store: Store
    clock: Clock
    correction: float
    tx_power: int


@asynccontextmanager
async def _env(obj: CliContext) -> AsyncIterator[_Env]:
    try:
        config = load_config(obj.config_path)
        settings = sync_settings(config)
        clock = clock_from_spec(config.agent.clock)
        calibration = device_calibration(config, obj.state_dir)
        store = Store.open(obj.state_dir)
    except (ConfigError, StoreError, CalibrationError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.ClickException(f"agent.clock: {exc}") from None
    try:
        async with open_session(settings, HTTP_TIMEOUT) as session:
            client = SyncService(session, settings, clock, store)
            yield _Env(config, client, store, clock, calibration.rssi_correction, calibration.tx_power)
    finally:
        store.close()


def _run(coro_fn: Callable[[], Any]) -> Any:
    try:
        return asyncio.run(coro_fn())
    except (SyncError, ConfigError) as exc:
        raise click.ClickException(exc.reason if isinstance(exc, SyncError) else str(exc)) from None


def _day(date: dt.date | None) -> int | None:
    return None if date is None else date_to_day(date)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_obj
def sync(obj: CliContext, as_json: bool) -> None:
    """Pull the new infection lists now, verify their signatures and match them against this device."""

    async def go() -> dict[str, Any]:
        async with _env(obj) as env:
            scheme = SchemeName(env.config.agent.scheme)
            if scheme is SchemeName.EBID:
                raise click.ClickException("EBID mode matches nothing on the device: use `proxitrace status-check`")
            bar = _Bar(f"{scheme} list")
            try:
                outcome = await env.client.sync(scheme, risk_settings(env.config), env.correction, bar)
            finally:
                bar.close()
            return {
                "scheme": scheme.value,
                "lists": outcome.lists,
                "keys": outcome.keys,
                "matched_keys": outcome.matched_keys,
                "notify": outcome.notify,
                "summaries": list(outcome.summaries),
                "problems": list(outcome.problems),
                "bundle_tag": env.client.last_tag(scheme),
            }

    result = _run(go)
    if as_json:
        click.echo(json.dumps(result))
        return
    for problem in result["problems"]:
        click.echo(f"warning: {problem}", err=True)
    if not result["lists"]:
        click.echo(f"{result['scheme']}: nothing new")
        return
    verdict = "EXPOSED (see proxitrace exposures --explain)" if result["notify"] else "no notification"
    click.echo(
        f"{result['scheme']}: {result['lists']} new list(s), {result['keys']} keys, "
        f"{result['matched_keys']} matched; {verdict}"
    )


@click.command()
@click.option("--code", required=True, help="The enrolment code from the operator.")
@click.pass_obj
def register(obj: CliContext, code: str) -> None:
    """EBID mode: register this device with the backend (proof of work + enrolment code)."""

    async def go() -> tuple[dict[str, Any], int]:
        async with _env(obj) as env:
            bar = _Bar("proof of work")
            try:
                creds = await env.client.register(code.strip(), bar, env.tx_power)
            finally:
                bar.close()
            left = KeyRing(env.store, SchemeName.EBID).ebid_periods_left(env.clock.now())
            return creds, left * int(creds["period_seconds"])

    creds, seconds = _run(go)
    click.echo(f"registered (country code {creds['country_code']}); EBIDs for the next {seconds // 3600} h stored")


@click.command()
@click.option("--tan", required=True, help="The TAN the health authority gave you.")
@click.option(
    "--onset",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Symptom onset (or test) date, YYYY-MM-DD: keys from two days before it are sent. An onset date the "
    "health authority set on the TAN wins.",
)
@click.option("--yes", is_flag=True, help="Do not ask for consent (it was given otherwise).")
@click.pass_obj
def report(obj: CliContext, tan: str, onset: dt.datetime | None, yes: bool) -> None:
    """Report a diagnosis: read what the TAN carries, show exactly what would be sent, ask for consent, then
    spend the TAN and send it.

    The TAN is checked first, without spending it, because it carries the health authority's onset date,
    which decides the contagious window shown and sent; a report declined at the question leaves the TAN
    unspent on the backend, so it can be used later."""
    own_onset = _day(onset.date()) if onset else None

    async def go() -> str:
        async with _env(obj) as env:
            client = env.client
            scheme = SchemeName(env.config.agent.scheme)
            now = env.clock.now()
            url = client.settings.base_url
            if scheme is SchemeName.EBID and not client.ebid_contacts(None, now, env.correction):
                return "nothing to report: no EBID heard in the retention period (the TAN was not used)"
            grant = await client.check_tan(tan)
            effective = reported_onset(grant, own_onset)
            click.echo(_onset_note(grant, own_onset))
            first = client.first_contagious_day(effective, now)
            click.echo(f"Contagious window sent: {day_to_iso(first)} to {day_to_iso(int(now) // 86_400)}.")
            if scheme is SchemeName.EBID:
                contacts = client.ebid_contacts(effective, now, env.correction)
                if not contacts:
                    return "nothing to report: no EBID heard in the contagious window"
                days = sorted({int(c.time) // 86_400 for c in contacts})
                click.echo(
                    f"To send to {url}: {len(contacts)} EBIDs this device received between {day_to_iso(days[0])} and "
                    f"{day_to_iso(days[-1])}, each with when it was heard and how strong (attenuation per scan). "
                    "No key of yours, no location, no name. Each goes as a separate submission the backend cannot "
                    f"tie to the others, spread over {client.settings.submission_spread_seconds / 60:.0f} min."
                )
            else:
                keys = client.report_keys(scheme, effective, now)
                if not keys:
                    return "nothing to report: no key of this device covers the contagious window"
                days = sorted(k.rolling_start_interval_number // 144 for k in keys)
                what = "daily key (TEK)" if scheme is SchemeName.GAEN else "key chain from the first contagious day"
                click.echo(
                    f"To send to {url}: {len(keys)} {what}{'s' if len(keys) > 1 else ''} covering "
                    f"{day_to_iso(days[0])} to {day_to_iso(days[-1])}, padded with fake keys. Anyone who heard this "
                    "device then will be notified; nothing else about you is sent."
                )
                if scheme is SchemeName.DP3T:
                    click.echo("Afterwards this device starts a fresh key chain.")
            if not yes and not click.confirm("Send this report?", default=False, err=True):
                raise click.Abort
            if scheme is SchemeName.EBID:
                await client.submit(contacts, await client.buy_submission_tokens(tan, len(contacts), grant.report_type))
            else:
                await client.upload(scheme, await client.exchange_tan(tan), own_onset, keys)
            return "report sent; thank you"

    click.echo(_run(go))


def _onset_note(grant: TanGrant, own_onset: int | None) -> str:
    """Which onset the report uses, and why, in one line (the officer's wins over ``--onset``)."""
    kind = f"report type: {grant.report_type.name.lower().replace('_', ' ')}"
    if grant.onset_day is None:
        if own_onset is None:
            return f"No onset date given: the whole retention is sent ({kind})."
        return f"Onset date {day_to_iso(own_onset)} (yours; the TAN carries none; {kind})."
    officer = day_to_iso(grant.onset_day)
    if own_onset is not None and own_onset != grant.onset_day:
        return f"Onset date {officer} from the health authority replaces your --onset {day_to_iso(own_onset)} ({kind})."
    return f"Onset date {officer} from the health authority ({kind})."


@click.command("status-check")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_obj
def status_check(obj: CliContext, as_json: bool) -> None:
    """EBID mode: ask the backend whether this device is at risk (a few times a day at most)."""

    async def go() -> dict[str, Any]:
        async with _env(obj) as env:
            result = await env.client.ask_risk_verdict()
            return {
                "at_risk": result.at_risk,
                "polls_left_today": result.polls_left_today,
                "must_register_again": result.must_register_again,
                "has_capability": env.client.capability() is not None,
                "summary": result.explanation.get("summary", ""),
            }

    result = _run(go)
    if as_json:
        click.echo(json.dumps(result))
        return
    if result["at_risk"]:
        click.echo(f"AT RISK: {result['summary']}")
    else:
        click.echo(f"not at risk ({result['summary'] or 'no reported contact'})")
    if result["must_register_again"] and result["has_capability"]:
        click.echo("The backend erased this pseudonym: the agent registers again by itself with its capability.")
    elif result["must_register_again"]:
        click.echo("The backend erased this pseudonym: register again (proxitrace register --code …).")
    click.echo(f"{result['polls_left_today']} status check(s) left today", err=True)
