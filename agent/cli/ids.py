"""Diagnostics for field engineers: derive IDs from keys and decode adverts heard with other tools."""

from __future__ import annotations

import json
import sys

import click

from agent.cli.params import HexBytes
from agent.schemes import dp3t, gaen
from agent.schemes.base import DecodedAdvert, Rejected, uuid16_of
from agent.schemes.decoder import decode_advertising_data, decode_service_data


@click.group()
def ids() -> None:
    """Derive the ephemeral IDs a key generates (for checking captures against keys)."""


@ids.command("dp3t")
@click.option("--sk", "sk", type=HexBytes(dp3t.SK_LEN), required=True, help="Day key SK_t, 32 bytes hex.")
@click.option(
    "--days-after",
    type=click.IntRange(min=0, max=10_000),
    default=0,
    show_default=True,
    help="Advance the key chain N days first (SK_t+N).",
)
def ids_dp3t(sk: bytes, days_after: int) -> None:
    """Print the 96 EphIDs of a DP-3T day key, one hex per line, in derivation order (not shuffled)."""
    for ephid in dp3t.ephids(dp3t.advance_key(sk, days_after)):
        click.echo(ephid.hex())


@ids.command("gaen")
@click.option("--tek", type=HexBytes(gaen.TEK_LEN), required=True, help="Temporary exposure key, 16 bytes hex.")
@click.option(
    "--start-interval",
    type=click.IntRange(min=0, max=2**32 - gaen.ROLLING_PERIOD),
    required=True,
    help="Rolling start interval number (ENIN) of the key.",
)
@click.option(
    "--metadata",
    type=HexBytes(gaen.AEM_LEN),
    default="40000000",
    show_default=True,
    help="The 4 plaintext metadata bytes to encrypt into each AEM.",
)
def ids_gaen(tek: bytes, start_interval: int, metadata: bytes) -> None:
    """Print the 144 RPIs of a TEK with their AEMs: 'RPI AEM' in hex, one interval per line."""
    key = gaen.aemk(tek)
    for rpi in gaen.rpis(gaen.rpik(tek), start_interval):
        click.echo(f"{rpi.hex()} {gaen.encrypt_metadata(key, rpi, metadata).hex()}")


@click.group()
def advert() -> None:
    """Work with advert payloads."""


@advert.command("decode")
@click.argument("payload", type=HexBytes())
@click.option(
    "--uuid",
    default=None,
    help="Treat PAYLOAD as raw service data of this UUID (e.g. fd6f) instead of advertising data.",
)
def advert_decode(payload: bytes, uuid: str | None) -> None:
    """Decode an advert (whole advertising data, or service data with --uuid) and print it as JSON."""
    if uuid is not None and uuid16_of(uuid) is None:
        raise click.BadParameter(f"{uuid!r} is not a 16-bit or Bluetooth-base UUID", param_hint="--uuid")
    result = decode_service_data(uuid, payload) if uuid is not None else decode_advertising_data(payload)
    if isinstance(result, Rejected):
        click.echo(f"proxitrace advert decode: {result.reason}", err=True)
        sys.exit(2)
    click.echo(json.dumps(_as_json(result), indent=2))


def _as_json(decoded: DecodedAdvert) -> dict[str, object]:
    return {
        "scheme": decoded.scheme.value,
        "ephemeral_id": decoded.ephemeral_id.hex(),
        "metadata": decoded.metadata.hex() or None,
        "tx_power": decoded.tx_power,
        "ecc": decoded.ecc,
        "version": decoded.version,
    }
