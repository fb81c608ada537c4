"""``proxitrace provision``: install a fleet bundle on this device and register it.

Runs as root (it writes /etc/proxitrace) by hand or from the first-boot unit
(``proxitrace-provision.service``, which looks for a bundle on mounted USB sticks).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from agent import provision
from agent.cli.context import CliContext
from agent.cli.sync import register


@click.command("provision")
@click.argument("bundle_path", metavar="BUNDLE", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--from-media",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Look for one *.proxitrace.toml under this mount point (e.g. /media) instead of naming BUNDLE.",
)
@click.option(
    "--etc-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/etc/proxitrace"),
    show_default=True,
    help="Where config.toml, the backend's public key and its CA go.",
)
@click.option("--no-register", is_flag=True, help="Install only; register later with `proxitrace register`.")
@click.pass_context
def provision_command(
    ctx: click.Context, bundle_path: Path | None, from_media: Path | None, etc_dir: Path, no_register: bool
) -> None:
    """Install a provisioning bundle (config, backend key and CA) and register with its enrolment code."""
    obj: CliContext = ctx.obj
    if (bundle_path is None) == (from_media is None):
        raise click.UsageError("name a BUNDLE file or --from-media DIR (one of them)")
    try:
        if from_media is not None:
            bundle_path = provision.find_bundle(from_media)
            if bundle_path is None:
                click.echo(f"no provisioning bundle under {from_media}; nothing to do", err=True)
                return
        assert bundle_path is not None
        bundle = provision.read_bundle(bundle_path)
        installed = provision.install_bundle(bundle, etc_dir)
    except provision.ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{etc_dir}: {exc.strerror or exc}") from None
    click.echo(f"device {bundle.device}: {bundle.scheme} configuration written to {installed.config_path}")
    if bundle.enrolment_code and not no_register:
        device = CliContext(config_path=installed.config_path, state_dir=obj.state_dir)
        with click.Context(register, info_name="register", obj=device) as sub:
            try:
                sub.invoke(register, code=bundle.enrolment_code)
            finally:
                provision.give_state_to_owner(obj.state_dir)
    provision.mark_provisioned(bundle, etc_dir, time.time())
