"""``proxitrace match``: run one signed export file against this device's sightings, by hand."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric import ec

from agent.calibration import CalibrationError
from agent.cli.context import CliContext
from agent.clock import SystemClock
from agent.config import ConfigError, device_calibration, load_config, risk_settings
from agent.exposure import ExportRun, process_export, workers_for
from agent.protocol.export import ExportError, verify_export_stream
from agent.schemes.base import SchemeName
from agent.schemes.published import DP3T_KEY_LEN, GAEN_KEY_LEN
from agent.signing_keys import SigningKeyError, load_public_key
from agent.store import Store, StoreError


class TrustedForAnyKeyId(Mapping[object, ec.EllipticCurvePublicKey]):
    """The one key given on the command line, whatever key id the file's signature info names: the
    signature itself is what is checked, the id is only a label for picking among several keys."""

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        self.key = key

    def __getitem__(self, name: object) -> ec.EllipticCurvePublicKey:
        return self.key

    def __iter__(self) -> Iterator[object]:
        return iter(["command-line key"])

    def __len__(self) -> int:
        return 1


@click.command()
@click.option(
    "--list",
    "list_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A signed GAEN-format export zip (GAEN TEKs, or DP-3T day keys with --scheme dp3t).",
)
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The list signer's P-256 public key (PEM or base64).",
)
@click.option("--scheme", type=click.Choice(["gaen", "dp3t"]), default="gaen", show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Processes to match in (0: the config's agent.match_workers, whose 0 is one per core).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_obj
def match(obj: CliContext, list_path: Path, public_key: Path, scheme: str, workers: int, as_json: bool) -> None:
    """Verify an export file and match it against the local store; results go to `proxitrace exposures`.

    The file is streamed (verified in one pass, then its keys read in chunks), so a national list of a
    million keys needs no more memory than a small one."""
    now = SystemClock().now()
    with contextlib.ExitStack() as stack:
        try:
            key = load_public_key(public_key)
            source = stack.enter_context(list_path.open("rb"))
            verified = verify_export_stream(
                source,
                TrustedForAnyKeyId(key),
                now=now,
                key_length=GAEN_KEY_LEN if scheme == "gaen" else DP3T_KEY_LEN,
            )
            config = load_config(obj.config_path)
            correction = device_calibration(config, obj.state_dir).rssi_correction
            store = Store.open(obj.state_dir)
            stack.callback(store.close)
            count = verified.summary.key_count
            with click.progressbar(
                length=count, label=f"matching {count} keys", file=click.get_text_stream("stderr"), show_pos=True
            ) as bar:
                run = ExportRun(
                    SchemeName(scheme),
                    str(list_path.name),
                    now,
                    risk_settings(config),
                    correction,
                    config.agent.retention_days,
                    workers=workers_for(verified, workers or config.agent.match_workers),
                )
                outcome = process_export(store, verified, run, progress=bar.update)
        except (ExportError, SigningKeyError, ConfigError, CalibrationError, StoreError, OSError) as exc:
            raise click.ClickException(f"{list_path.name}: {exc}") from None
    summary = verified.summary
    result = {
        "keys": outcome.keys,
        "matched_keys": outcome.matched_keys,
        "already_processed": outcome.already_processed,
        "notify": outcome.notify,
        "region": summary.region,
        "batch": f"{summary.batch_num}/{summary.batch_size}",
    }
    if as_json:
        click.echo(json.dumps(result))
    elif outcome.already_processed:
        click.echo("This list was matched before; nothing changed.")
    else:
        click.echo(
            f"{outcome.keys} keys checked, {outcome.matched_keys} matched; "
            + ("EXPOSED (see proxitrace exposures --explain)" if outcome.notify else "no notification")
        )
