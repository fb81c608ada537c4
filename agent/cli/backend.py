"""``proxitrace backend``: run the pilot backend and do the operator's and health authority's chores."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent import provision
from agent.clock import Clock, clock_from_spec, date_to_day
from agent.config import ConfigError
from agent.protocol import wire
from agent.server.config import BackendConfig, load_backend_config
from agent.server.database import DatabaseError
from agent.server.db import ServerStore

if TYPE_CHECKING:  # the portal's libraries load only for the commands that use them
    from agent.server.portal.accounts import Accounts, Credentials
    from agent.server.portal.audit import Audit
    from agent.server.portal.store import PortalStore

log = logging.getLogger(__name__)
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


class Duration(click.ParamType):
    """``90``, ``90s``, ``30m``, ``24h`` or ``7d``, as seconds."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _DURATION.match(str(value).strip())
        if not match or int(match[1]) <= 0:
            self.fail(f"{value!r} is not a duration like 90s, 30m, 24h or 7d", param, ctx)
        return int(match[1]) * _UNIT[match[2]]


class Date(click.ParamType):
    name = "date"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date YYYY-MM-DD", param, ctx)


def day_number(date: dt.date | None) -> int | None:
    return None if date is None else date_to_day(date)


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Backend TOML config (default /etc/proxitrace/backend.toml when it exists, else built-in defaults).",
)


def _load(config_path: Path | None) -> BackendConfig:
    try:
        return load_backend_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def backend() -> None:
    """The pilot backend: lists, TANs, uploads, registration, EBIDs, status and federation."""


@backend.command()
@_config_option
@click.option("--host", default=None, help="Address to listen on (default: [server] host, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="0 picks a free port (default: [server] port, 8080)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    help='Worker processes sharing the port; more than 1 needs [server] database = "postgresql://...".',
)
def serve(config_path: Path | None, host: str | None, port: int | None, workers: int) -> None:
    """Serve the backend until SIGTERM or Ctrl-C."""
    from agent.server.database import is_postgresql
    from agent.server.serve import configured_backend, serve_workers, tls_context
    from agent.server.serve import serve as run

    config = _load(config_path)
    if workers > 1 and not is_postgresql(config.database):
        raise click.ClickException(
            '--workers: several workers need a shared PostgreSQL store ([server] database = "postgresql://...")'
        )
    host = config.server.host if host is None else host
    port = config.server.port if port is None else port
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        tls = tls_context(config)
        backend_ = configured_backend(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    scheme = "https" if tls else "http"

    if config.portal.enabled and backend_.portal.portal_store.enabled_officers() == 0:
        config_arg = f" --config {shlex.quote(str(config_path))}" if config_path else ""
        log.warning("portal: no officer account yet; add one with: proxitrace backend officer add NAME%s", config_arg)

    def ready(bound: int) -> None:
        click.echo(f"proxitrace backend listening on {scheme}://{host}:{bound}", err=True)

    def portal_ready(portal_host: str, bound: int) -> None:
        click.echo(f"proxitrace portal listening on http://{portal_host}:{bound}/portal/", err=True)

    try:
        if workers > 1:
            backend_.store.close()  # migrated; each worker opens its own connections after the fork
            raise SystemExit(serve_workers(config, host, port, workers, ready, tls))
        asyncio.run(run(backend_, host, port, ready, portal_ready, tls))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@backend.command()
@_config_option
def keygen(config_path: Path | None) -> None:
    """Create the ECDSA P-256 signing key (kept if it exists) and print the public key for the agents."""
    from agent import signing_keys

    config = _load(config_path)
    path = config.signing_key_path
    try:
        if path.exists():
            key = signing_keys.load_private_key(path)
            click.echo(f"signing key exists at {path}; kept", err=True)
        else:
            key = signing_keys.generate_key_file(path)
            click.echo(f"signing key written to {path}", err=True)
    except signing_keys.SigningKeyError as exc:
        raise click.ClickException(exc.reason) from None
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    public = key.public_key()
    click.echo(signing_keys.public_key_pem(public).rstrip())
    click.echo(f'# for the agents\' config: [backend] public_key = "{signing_keys.public_key_base64(public)}"')
    click.echo(f"# export signature info: key_id = {config.signing.key_id}, key_version = {config.signing.key_version}")


def _open(config: BackendConfig) -> ServerStore:
    try:
        return ServerStore(config.database)
    except OSError as exc:
        raise click.ClickException(f"server.data_dir: {config.data_dir}: {exc.strerror or exc}") from None
    except DatabaseError as exc:
        raise click.ClickException(f"server.database: {exc}") from None


def _clock(config: BackendConfig) -> Clock:
    try:
        return clock_from_spec(config.server.clock)
    except ValueError as exc:
        raise click.ClickException(f"server.clock: {exc}") from None


# The report types a TAN may carry (``wire.REPORT_TYPES``), by the names the command line takes.
TAN_REPORT_TYPES = {t.name.lower().replace("_", "-"): t for t in sorted(wire.REPORT_TYPES)}
TAN_REPORT_TYPES_DEFAULT = "confirmed-test"


@backend.group()
def tan() -> None:
    """TANs for diagnosed people (the health authority's side)."""


@tan.command("issue")
@_config_option
@click.option("--valid", type=Duration(), default=None, help="Validity, e.g. 24h (default tan.valid_seconds).")
@click.option("--onset", type=Date(), default=None, help="Symptom onset (or test) date, YYYY-MM-DD.")
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option(
    "--report-type",
    type=click.Choice(list(TAN_REPORT_TYPES)),
    default=TAN_REPORT_TYPES_DEFAULT,
    show_default=True,
    help="What the officer confirms; the TAN hands it to the device, whose published keys carry it.",
)
def tan_issue(config_path: Path | None, valid: int | None, onset: dt.date | None, count: int, report_type: str) -> None:
    """Issue one-time TANs; each works once and expires."""
    from agent.server.uploads import issue_tans

    config = _load(config_path)
    seconds = config.tan.valid_seconds if valid is None else valid
    store = _open(config)
    try:
        issued = issue_tans(
            store, _clock(config).now(), seconds, day_number(onset), count, TAN_REPORT_TYPES[report_type]
        )
    finally:
        store.close()
    click.echo("\n".join(t.code for t in issued))
    click.echo(f"valid until {_utc(issued[0].expires)}", err=True)


@backend.group()
def enrol() -> None:
    """Enrolment codes for EBID registration (the operator's side; a CAPTCHA stand-in for wearables)."""


@enrol.command("issue")
@_config_option
@click.option(
    "--valid", type=Duration(), default=None, help="Validity, e.g. 30d (default ebid.enrolment_valid_seconds)."
)
@click.option("--count", type=click.IntRange(1, 10_000), default=1, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one provisioning bundle per code into this folder, and a printable sheet.txt.",
)
@click.option("--url", default=None, help="With --out: the backend URL the devices use (e.g. https://backend.example).")
@click.option(
    "--ca",
    "ca_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --out: PEM of the CA that signed the backend's TLS certificate, pinned on the devices.",
)
@click.option("--prefix", default="device-", show_default=True, help="With --out: device names are PREFIX0001, ...")
def enrol_issue(
    config_path: Path | None,
    valid: int | None,
    count: int,
    out: Path | None,
    url: str | None,
    ca_path: Path | None,
    prefix: str,
) -> None:
    """Issue one-time enrolment codes, one per device to register (with --out: as provisioning bundles)."""
    from agent.server.ebid import issue_enrolment_codes

    config = _load(config_path)
    if out is not None and not url:
        raise click.UsageError("--out needs --url, the backend URL the devices will use")
    public_pem, ca_pem = _fleet_material(config, ca_path) if out is not None else ("", "")
    seconds = config.ebid.enrolment_valid_seconds if valid is None else valid
    store = _open(config)
    try:
        issued, expires = issue_enrolment_codes(store, _clock(config).now(), seconds, count)
    finally:
        store.close()
    if out is None:
        click.echo("\n".join(issued))
        click.echo(f"valid until {_utc(expires)}", err=True)
        return
    assert url is not None
    bundles = [
        provision.Bundle(
            device=f"{prefix}{i:04d}",
            scheme="ebid",
            backend_url=url.rstrip("/"),
            backend_public_key=public_pem,
            key_id=config.signing.key_id,
            backend_ca=ca_pem,
            enrolment_code=code,
        )
        for i, code in enumerate(issued, start=1)
    ]
    try:
        provision.parse_bundle(provision.bundle_to_toml(bundles[0]), "bundle")
        provision.write_bundles(out, bundles)
    except provision.ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    sheet = out / "sheet.txt"
    sheet.write_text(provision.sheet(bundles, _utc(expires)))
    sheet.chmod(0o600)
    click.echo(f"{len(bundles)} provisioning bundles and {sheet} written (codes valid until {_utc(expires)})", err=True)


def _fleet_material(config: BackendConfig, ca_path: Path | None) -> tuple[str, str]:
    """The public key PEM that verifies this backend's lists, and the CA PEM to pin (or "")."""
    from agent import signing_keys

    try:
        public = signing_keys.load_private_key(config.signing_key_path).public_key()
    except signing_keys.SigningKeyError as exc:
        raise click.ClickException(f"{exc.reason} (run proxitrace backend keygen first)") from None
    ca_pem = ""
    if ca_path is not None:
        try:
            ca_pem = ca_path.read_text()
        except OSError as exc:
            raise click.ClickException(f"{ca_path}: {exc.strerror or exc}") from None
    return signing_keys.public_key_pem(public), ca_pem


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@backend.group()
def officer() -> None:
    """Health officers' accounts for the portal (/portal/) and their API tokens."""


def _accounts(config: BackendConfig) -> tuple[PortalStore, Accounts, Audit]:
    from agent.server.portal.accounts import Accounts, LoginPolicy
    from agent.server.portal.audit import Audit
    from agent.server.portal.service import portal_store_of

    try:
        store = portal_store_of(config.database)
    except OSError as exc:
        raise click.ClickException(f"server.data_dir: {config.data_dir}: {exc.strerror or exc}") from None
    except DatabaseError as exc:
        raise click.ClickException(f"server.database: {exc}") from None
    policy = LoginPolicy(config.portal.max_failed_logins, config.portal.lockout_seconds)
    return store, Accounts(store, policy), Audit(store)


def _show_credentials(creds: Credentials, qr: bool) -> None:
    click.echo(f"officer: {creds.name}")
    click.echo(f"password: {creds.password}")
    if creds.totp_secret is not None and creds.totp_uri is not None:
        click.echo(f"totp secret: {creds.totp_secret}")
        click.echo(f"totp uri: {creds.totp_uri}")
        if qr:  # for the officer's authenticator app to scan off the operator's screen
            import segno

            picture = io.StringIO()
            segno.make(creds.totp_uri, error="m").terminal(out=picture, compact=True)
            click.echo(picture.getvalue().rstrip("\n"))
    click.echo("hand these over once, in person; they are not shown again", err=True)


def _officer_action(config_path: Path | None, action: str, name: str, totp: bool = True, qr: bool = False) -> None:
    from agent.server.portal.accounts import AccountError
    from agent.server.portal.audit import CLI_ACTOR, Action

    config = _load(config_path)
    store, accounts, audit = _accounts(config)
    now = _clock(config).now()
    try:
        if action == "add":
            creds = accounts.add(name, totp, now)
            audit.record(now, CLI_ACTOR, Action.OFFICER_ADDED, creds.name)
            _show_credentials(creds, qr)
        elif action == "reset":
            creds = accounts.reset(name, totp)
            audit.record(now, CLI_ACTOR, Action.OFFICER_RESET, creds.name)
            _show_credentials(creds, qr)
        elif action == "disable":
            accounts.disable(name)
            audit.record(now, CLI_ACTOR, Action.OFFICER_DISABLED, name.strip())
            click.echo(f"officer {name.strip()!r} disabled; their sessions and API tokens no longer work", err=True)
        else:
            token = accounts.new_api_token(name, now)
            audit.record(now, CLI_ACTOR, Action.API_TOKEN_CREATED, name.strip())
            click.echo(token)
            click.echo("use it as 'Authorization: Bearer <token>' on POST /v1/admin/*", err=True)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


_totp_option = click.option(
    "--totp/--no-totp", default=True, show_default=True, help="Require a one-time code (RFC 6238) at login."
)
_qr_option = click.option("--qr", is_flag=True, help="Also draw the TOTP secret as a QR code for an authenticator app.")


@officer.command("add")
@_config_option
@_totp_option
@_qr_option
@click.argument("name")
def officer_add(config_path: Path | None, totp: bool, qr: bool, name: str) -> None:
    """Create an account; prints its password (and TOTP secret) once."""
    _officer_action(config_path, "add", name, totp, qr)


@officer.command("reset")
@_config_option
@_totp_option
@_qr_option
@click.argument("name")
def officer_reset(config_path: Path | None, totp: bool, qr: bool, name: str) -> None:
    """New password (and TOTP secret), unlock and re-enable; ends the officer's sessions."""
    _officer_action(config_path, "reset", name, totp, qr)


@officer.command("disable")
@_config_option
@click.argument("name")
def officer_disable(config_path: Path | None, name: str) -> None:
    """Disable an account: no login, its sessions and API tokens stop working."""
    _officer_action(config_path, "disable", name)


@officer.command("token")
@_config_option
@click.argument("name")
def officer_token(config_path: Path | None, name: str) -> None:
    """Create an API token for the officer's automation (POST /v1/admin/tans and /enrolment-codes)."""
    _officer_action(config_path, "token", name)


@officer.command("list")
@_config_option
def officer_list(config_path: Path | None) -> None:
    """The accounts and whether each is enabled, locked, with a second factor."""
    config = _load(config_path)
    store, _, _ = _accounts(config)
    now = _clock(config).now()
    try:
        for o in store.officers():
            state = "disabled" if o.disabled else ("locked" if o.locked_until > now else "enabled")
            click.echo(f"{o.name}\t{state}\t{'totp' if o.totp_secret else 'password only'}")
    finally:
        store.close()
