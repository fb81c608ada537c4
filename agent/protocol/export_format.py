"""The vocabulary of GAEN key export files, shared by their builder and their verifier: the entry names and
header, which key signs a file, the bounds a verifier reads within, what a verified file holds, and the one
error every refusal is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from agent.schemes.published import PublishedKey

EXPORT_HEADER = b"EK Export v1    "
EXPORT_BIN = "export.bin"
EXPORT_SIG = "export.sig"
ECDSA_P256_SHA256_OID = "1.2.840.10045.4.3.2"

_KIB = 1024
_MIB = 1024 * _KIB


class ExportError(Exception):
    """An export file was refused; ``reason`` is one line, safe to log (it never contains key material)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignatureInfo:
    """Which key signs a file: GAEN names it by id (the region's MCC) and version (for rotation)."""

    verification_key_id: str
    verification_key_version: str
    signature_algorithm: str = ECDSA_P256_SHA256_OID


@dataclass(frozen=True)
class ExportLimits:
    """Bounds on what a verifier will read, so a hostile file costs at most this much memory and time.

    Real exports are random key bytes that hardly compress (ratio ~1.3); entries up to
    ``ratio_exempt_bytes`` are too small to be a bomb and skip the ratio check.
    """

    max_archive_bytes: int = 16 * _MIB
    max_entries: int = 16
    max_export_bin_bytes: int = 32 * _MIB
    max_export_sig_bytes: int = 64 * _KIB
    max_compression_ratio: float = 20.0
    ratio_exempt_bytes: int = 64 * _KIB
    max_keys: int = 1_000_000
    max_signatures: int = 16
    clock_skew_seconds: float = 7200.0
    max_field_bytes: int = 64 * _KIB
    """Streamed reading only: the largest single field, and all non-key fields together, it will buffer."""


DEFAULT_LIMITS = ExportLimits()

PublicKeys = Mapping[str | tuple[str, str], ec.EllipticCurvePublicKey]
"""Trusted verification keys, by ``verification_key_id`` or, to pin a version, by ``(key_id, version)``."""


@dataclass(frozen=True)
class VerifiedExport:
    """The content of an export whose signature checked out; ``export_sha256`` identifies the list."""

    start_timestamp: int
    end_timestamp: int
    region: str
    batch_num: int
    batch_size: int
    signature_infos: tuple[SignatureInfo, ...]
    keys: tuple[PublishedKey, ...]
    revised_keys: tuple[PublishedKey, ...]
    verified_by: SignatureInfo
    export_sha256: bytes


def check_p256(curve: ec.EllipticCurve, what: str) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise ValueError(f"{what} is on {curve.name}, want P-256 (secp256r1)")
