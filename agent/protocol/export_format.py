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

NATIONAL_KEYS = 2_000_000
"""Keys one file may hold: a national 14-day window held about 1.7 M keys at its peak (issue 18), and a
device's first pull from our backend is that whole window in one file."""
LARGEST_KEY_ENTRY_BYTES = 51
"""One keys-field entry at its largest as servers write it: a 32-byte DP-3T day key with every field
set (tag and length 2, key 34, risk level 2, start 6, period 3, report type 2, days since onset 2)."""


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

    Set from the national figures: ``max_keys`` entries of ``LARGEST_KEY_ENTRY_BYTES`` (≈ 97 MiB of
    export.bin); the archive may be as large, because key bytes are random and deflate cannot shrink
    them. The streamed verifier holds none of it in memory (the daemon spools it to disk); the in-memory
    ``verify_export`` is for small files (tests, replays). Real exports hardly compress (ratio ~1.3);
    entries up to ``ratio_exempt_bytes`` are too small to be a bomb and skip the ratio check.
    """

    max_archive_bytes: int = NATIONAL_KEYS * LARGEST_KEY_ENTRY_BYTES + _MIB
    max_entries: int = 16
    max_export_bin_bytes: int = NATIONAL_KEYS * LARGEST_KEY_ENTRY_BYTES + 64 * _KIB
    max_export_sig_bytes: int = 64 * _KIB
    max_compression_ratio: float = 20.0
    ratio_exempt_bytes: int = 64 * _KIB
    max_keys: int = NATIONAL_KEYS
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
