"""The backend's P-256 signing key on disk, and the public key in the forms configs and clients use.

One key signs both the export files (``export.sig``) and the download responses (``Signature`` header).
The private key file is created 0600 at open time, with the umask tightened around the ``open``, so it is
never readable by anyone else, not even between create and chmod. Agents only ever hold the public key,
which configs carry as PEM or as base64 of the SubjectPublicKeyInfo DER (the form GAEN key servers publish).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from agent.paths import ensure_private_dir

logger = logging.getLogger(__name__)

_MAX_KEY_FILE_BYTES = 64 * 1024
_PEM_MARK = b"-----BEGIN "


class SigningKeyError(Exception):
    """A key file or key text is missing, unreadable or not a P-256 key; ``reason`` says which (one line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def generate_signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: on an unattended server the file mode, not a passphrase, protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def save_private_key(key: ec.EllipticCurvePrivateKey, path: Path, *, overwrite: bool = False) -> None:
    """Write the key as PEM, mode 0600 from creation; the parent directory is created 0700 if missing.

    Without ``overwrite`` an existing file is an error (a signing key is never silently replaced); with
    it the new key goes to a temporary file that replaces the old one atomically.
    """
    _require_p256_private(key, str(path))
    ensure_private_dir(path.parent)
    pem = private_key_pem(key)
    if overwrite:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        _write_new_private_file(tmp, pem)
        try:
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
    else:
        _write_new_private_file(path, pem)


def _write_new_private_file(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    old_umask = os.umask(0o077)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path}: already exists, not replacing a signing key") from None
    finally:
        os.umask(old_umask)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def generate_key_file(path: Path) -> ec.EllipticCurvePrivateKey:
    """A fresh key saved at ``path`` (which must not exist yet)."""
    key = generate_signing_key()
    save_private_key(key, path)
    return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key in a PEM file, or ``SigningKeyError`` naming the file and what is wrong."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningKeyError(f"{path}: private key is encrypted; want an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        if _looks_like_public_key(data):
            raise SigningKeyError(f"{path}: holds a public key, want the private signing key") from None
        raise SigningKeyError(f"{path}: not a PEM private key (garbled or wrong format)") from None
    private = _require_p256_private(key, str(path))
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("signing key %s is open to group/others (mode %o); chmod 600 it", path, mode & 0o777)
    return private


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in a file holding PEM, or base64 of SPKI DER, or raw DER."""
    return parse_public_key(_read_key_file(path), source=str(path))


def public_key_from_setting(value: str, *, source: str) -> ec.EllipticCurvePublicKey:
    """A config value that is either the key itself or, when it is an absolute path, the file holding it.

    Operators copy the backend's public key to a file next to the config and write its path (as
    ``hw/README.md`` and provisioning bundles do); a pasted key never starts with ``/``.
    """
    if value.strip().startswith("/"):
        try:
            return load_public_key(Path(value.strip()))
        except SigningKeyError as exc:
            raise SigningKeyError(f"{source}: {exc.reason}") from None
    return parse_public_key(value, source=source)


def parse_public_key(text: str | bytes, *, source: str = "public key") -> ec.EllipticCurvePublicKey:
    """A P-256 public key from config text: PEM, base64 of SubjectPublicKeyInfo DER, base64 of the
    65-byte uncompressed point, or those DER/point bytes themselves."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    stripped = data.strip()
    if stripped.startswith(_PEM_MARK):
        try:
            key = serialization.load_pem_public_key(stripped)
        except (ValueError, UnsupportedAlgorithm):
            if b"PRIVATE KEY" in stripped:
                raise SigningKeyError(f"{source}: holds a private key, want a public key") from None
            raise SigningKeyError(f"{source}: not a PEM public key (garbled or wrong format)") from None
        return _require_p256_public(key, source)
    raw = _maybe_base64(stripped)
    for candidate in (raw, data) if raw is not None else (data,):
        key = _public_from_binary(candidate, source)
        if key is not None:
            return key
    raise SigningKeyError(f"{source}: not a public key (want PEM, or base64 of SPKI DER or of the EC point)")


def public_key_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def public_key_der(key: ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo DER."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_base64(key: ec.EllipticCurvePublicKey) -> str:
    """Standard base64 of the SPKI DER: one line, fits a TOML string or an environment variable."""
    return base64.b64encode(public_key_der(key)).decode("ascii")


def _read_key_file(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no such key file") from None
    except IsADirectoryError:
        raise SigningKeyError(f"{path}: is a directory, want a key file") from None
    except PermissionError:
        raise SigningKeyError(f"{path}: permission denied") from None
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise SigningKeyError(f"{path}: over {_MAX_KEY_FILE_BYTES} bytes, not a key file")
    if not data.strip():
        raise SigningKeyError(f"{path}: empty key file")
    return data


def _looks_like_public_key(data: bytes) -> bool:
    try:
        serialization.load_pem_public_key(data.strip())
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _maybe_base64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _public_from_binary(data: bytes, source: str) -> ec.EllipticCurvePublicKey | None:
    if len(data) == 65 and data[0] == 0x04:
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
        except ValueError:
            raise SigningKeyError(f"{source}: the EC point is not on P-256") from None
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return None
    return _require_p256_public(key, source)


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    return f"a {type(key).__name__} key"


def _require_p256_private(key: object, source: str) -> ec.EllipticCurvePrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise SigningKeyError(f"{source}: {_describe(key)}, want an EC P-256 private key")


def _require_p256_public(key: object, source: str) -> ec.EllipticCurvePublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise SigningKeyError(f"{source}: {_describe(key)}, want an EC P-256 public key")
