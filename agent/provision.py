"""Fleet provisioning: one bundle file per device, written by the operator, installed on the device.

Fifty wearables each need the same backend URL, the backend's public key and the CA of its TLS
certificate, and a different single-use enrolment code. A bundle carries exactly that, as one TOML file
(``NAME.proxitrace.toml``) that fits a USB stick: the public key and CA certificate are public, so the
only secret in it is the code, which the backend accepts once. Installing a bundle writes the key and
CA next to the agent's config and a config that points at them by path, then marks the device as
provisioned (the first-boot unit does nothing once that marker exists).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent import signing_keys
from agent.config import ConfigError, config_from_dict, config_to_toml

BUNDLE_FORMAT = 1
BUNDLE_SUFFIX = ".proxitrace.toml"
CONFIG_FILE = "config.toml"
PUBLIC_KEY_FILE = "backend-public.pem"
CA_FILE = "backend-ca.pem"
MARKER_FILE = "provisioned.toml"
"""Written last by an install; the packages' purge removes it together with the key and CA files."""

_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MAX_BUNDLE_BYTES = 256 * 1024


class ProvisionError(Exception):
    """A bundle that cannot be read or installed; the message is one line naming the file or field."""


@dataclass(frozen=True)
class Bundle:
    """What one device needs. ``enrolment_code`` is empty for schemes that do not register (DP-3T, GAEN)."""

    device: str
    scheme: str
    backend_url: str
    backend_public_key: str
    key_id: str = "proxitrace"
    backend_ca: str = ""
    enrolment_code: str = ""


@dataclass(frozen=True)
class Installed:
    config_path: Path
    public_key_path: Path
    ca_path: Path | None


def bundle_to_toml(bundle: Bundle) -> str:
    """The bundle file's text; multi-line PEM goes in TOML literal strings, so it is kept byte for byte."""
    lines = [
        "# Proxitrace provisioning bundle: install on the device with `proxitrace provision FILE`.",
        "# The enrolment code below is single-use; the keys and certificate are public.",
        f"format = {BUNDLE_FORMAT}",
        f"device = {_basic(bundle.device)}",
        f"scheme = {_basic(bundle.scheme)}",
        f"backend_url = {_basic(bundle.backend_url)}",
        f"key_id = {_basic(bundle.key_id)}",
        f"enrolment_code = {_basic(bundle.enrolment_code)}",
        f"backend_public_key = '''\n{bundle.backend_public_key.strip()}\n'''",
        f"backend_ca = '''\n{bundle.backend_ca.strip()}\n'''" if bundle.backend_ca.strip() else "backend_ca = ''",
    ]
    return "\n".join(lines) + "\n"


def _basic(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_bundle(text: str, source: str) -> Bundle:
    """A bundle from its file's text, checked field by field; ``ProvisionError`` names the one at fault."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionError(f"{source}: not a provisioning bundle (not valid TOML: {exc})") from None
    if raw.get("format") != BUNDLE_FORMAT:
        raise ProvisionError(f"{source}: format: expected {BUNDLE_FORMAT}, got {raw.get('format')!r}")
    fields = {
        "device",
        "scheme",
        "backend_url",
        "key_id",
        "enrolment_code",
        "backend_public_key",
        "backend_ca",
    }
    unknown = sorted(set(raw) - fields - {"format"})
    if unknown:
        raise ProvisionError(f"{source}: {unknown[0]}: unknown field")
    for name in fields:
        if name in raw and not isinstance(raw[name], str):
            raise ProvisionError(f"{source}: {name}: expected a string")
    for name in ("device", "scheme", "backend_url", "backend_public_key"):
        if not raw.get(name, "").strip():
            raise ProvisionError(f"{source}: {name}: missing")
    if not _DEVICE.match(raw["device"]):
        raise ProvisionError(f"{source}: device: 1-64 of A-Z a-z 0-9 . _ - , got {raw['device']!r}")
    bundle = Bundle(**{name: raw[name].strip() for name in fields if name in raw})
    if bundle.scheme == "ebid" and not bundle.enrolment_code:
        raise ProvisionError(f"{source}: enrolment_code: an EBID device needs one to register")
    if not re.match(r"^https?://[^/\s]+", bundle.backend_url):
        raise ProvisionError(f"{source}: backend_url: expected an http(s) URL, got {bundle.backend_url!r}")
    try:
        signing_keys.parse_public_key(bundle.backend_public_key, source="backend_public_key")
        agent_config(bundle, Path("/nonexistent"))
    except signing_keys.SigningKeyError as exc:
        raise ProvisionError(f"{source}: {exc.reason}") from None
    except ConfigError as exc:
        raise ProvisionError(f"{source}: {exc}") from None
    if bundle.backend_ca and "-----BEGIN CERTIFICATE-----" not in bundle.backend_ca:
        raise ProvisionError(f"{source}: backend_ca: not a PEM certificate")
    return bundle


def read_bundle(path: Path) -> Bundle:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_BUNDLE_BYTES + 1)
    except FileNotFoundError:
        raise ProvisionError(f"{path}: no such file") from None
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > _MAX_BUNDLE_BYTES:
        raise ProvisionError(f"{path}: over {_MAX_BUNDLE_BYTES} bytes, not a provisioning bundle")
    return parse_bundle(data.decode("utf-8", "replace"), str(path))


def agent_config(bundle: Bundle, etc_dir: Path) -> str:
    """The device's config.toml: the bundle's settings, with the key and CA as files under ``etc_dir``.

    Validated here (``ConfigError`` naming the key) so a bad bundle is refused before anything is written.
    """
    backend: dict[str, object] = {
        "url": bundle.backend_url,
        "public_key": str(etc_dir / PUBLIC_KEY_FILE),
        "key_id": bundle.key_id,
    }
    if bundle.backend_ca:
        backend["ca_file"] = str(etc_dir / CA_FILE)
    config = config_from_dict({"agent": {"scheme": bundle.scheme}, "backend": backend})
    header = f"# Written by `proxitrace provision` for device {bundle.device}; every other key is at its default.\n"
    return header + config_to_toml(config)


def install_bundle(bundle: Bundle, etc_dir: Path) -> Installed:
    """Write the public key, the CA (if any) and config.toml under ``etc_dir``, each atomically."""
    config_text = agent_config(bundle, etc_dir)
    etc_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    public_key_path = etc_dir / PUBLIC_KEY_FILE
    _write_atomic(public_key_path, bundle.backend_public_key.strip() + "\n")
    ca_path = None
    if bundle.backend_ca:
        ca_path = etc_dir / CA_FILE
        _write_atomic(ca_path, bundle.backend_ca.strip() + "\n")
    config_path = etc_dir / CONFIG_FILE
    _write_atomic(config_path, config_text)
    return Installed(config_path, public_key_path, ca_path)


def mark_provisioned(bundle: Bundle, etc_dir: Path, now: float) -> Path:
    """The marker that ends first-boot provisioning: the device name and when, never the code."""
    when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = etc_dir / MARKER_FILE
    _write_atomic(path, f"device = {_basic(bundle.device)}\nprovisioned_at = {_basic(when)}\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Readable by all (nothing here is secret), replaced in one rename so a power cut leaves old or new."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def find_bundle(media_root: Path) -> Path | None:
    """The one bundle on mounted removable media (``media_root`` and two levels below), or None.

    Several bundles on one stick is an operator's mistake (which one is this device?), so it is refused.
    """
    found = sorted(
        {p for pattern in ("*", "*/*", "*/*/*") for p in media_root.glob(pattern + BUNDLE_SUFFIX) if p.is_file()}
    )
    if len(found) > 1:
        names = ", ".join(str(p) for p in found[:3])
        raise ProvisionError(f"{media_root}: {len(found)} provisioning bundles ({names}...): leave one per stick")
    return found[0] if found else None


def write_bundles(out_dir: Path, bundles: Iterable[Bundle]) -> list[Path]:
    """One 0600 file per bundle (each holds a code), refusing to overwrite an earlier batch's files."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = []
    for bundle in bundles:
        path = out_dir / f"{bundle.device}{BUNDLE_SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise ProvisionError(f"{path}: already exists (a bundle of an earlier batch); use another --out") from None
        with os.fdopen(fd, "w") as f:
            f.write(bundle_to_toml(bundle))
        paths.append(path)
    return paths


def sheet(bundles: list[Bundle], expires: str) -> str:
    """The printable sheet that goes with a batch: which file and code belong to which device."""
    width = max([len(b.device) for b in bundles] + [6])
    lines = [
        "Proxitrace provisioning sheet",
        "",
        f"backend: {bundles[0].backend_url}" if bundles else "backend: -",
        f"codes valid until: {expires} (each code works once)",
        "",
        f"{'device':<{width}}  {'bundle file':<{width + len(BUNDLE_SUFFIX)}}  enrolment code",
    ]
    lines += [
        f"{b.device:<{width}}  {b.device + BUNDLE_SUFFIX:<{width + len(BUNDLE_SUFFIX)}}  {b.enrolment_code}"
        for b in bundles
    ]
    lines += [
        "",
        "On each device: copy its file to a USB stick and boot with it, or run",
        "  sudo proxitrace provision FILE",
    ]
    return "\n".join(lines) + "\n"


def give_state_to_owner(state_dir: Path) -> None:
    """Run as root, provisioning registers into the agent's state dir: what it created there must belong to
    the dir's owner (the service user), or the agent could not open its own store."""
    if os.geteuid() != 0 or not state_dir.is_dir():
        return
    owner = state_dir.stat()
    for path in [state_dir, *state_dir.rglob("*")]:
        st = path.lstat()
        if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
            os.lchown(path, owner.st_uid, owner.st_gid)
