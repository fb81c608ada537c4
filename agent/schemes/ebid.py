"""EBID mode: PEPP-PT/ROBERT-style EBIDs (ITU-T X.1152 Suppl. 38): device side and server helpers.

The device only ever holds EBIDs the server issued it; BK_t stays on the server. Anyone holding BK_t could
link every device, so no mode here lets a device derive its own EBIDs. The encrypted country code (ECC)
lets a federated backend route a report without being able to read foreign EBIDs.

No TX power on air. The advert's TX power byte used to carry the sender's calibrated power in clear: a
constant per device, so any radio nearby could link a device's successive EBIDs by it, undoing the
rotation. It is not carried at all now (the byte is reserved, sent as 0x00), rather than encrypted: the
backend already knows every registered device, so the device declares its TX power once at registration
(``agent.protocol.wire.Registration.tx_power``), reporters compute attenuations against the fixed
reference ``wire.EBID_REFERENCE_TX_POWER`` and the backend adds the heard device's declared power when it
scores. Encrypting it under a per-batch key would need a key the receivers cannot have (they must not
link either), so it could only be read by the backend anyway. The advert stays 31 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from agent.schemes._crypto import aes_ecb_decrypt, aes_ecb_encrypt, check_len
from agent.schemes.base import Broadcast, SchemeName

EBID_LEN = 16
PUID_LEN = 16
KEY_LEN = 16
ADVERT_VERSION = 0x01
DEFAULT_PERIOD_SECONDS = 900


def period_of(unix_seconds: float, period_seconds: int = DEFAULT_PERIOD_SECONDS) -> int:
    return int(unix_seconds) // period_seconds


def make_ebid(bk: bytes, puid: bytes) -> bytes:
    """Server side: EBID_t = AES-128(BK_t, PUID)."""
    check_len("BK", bk, KEY_LEN)
    check_len("PUID", puid, PUID_LEN)
    return aes_ecb_encrypt(bk, puid)


def puid_of(bk: bytes, ebid: bytes) -> bytes:
    """Server side: the PUID behind an EBID of period t."""
    check_len("BK", bk, KEY_LEN)
    check_len("EBID", ebid, EBID_LEN)
    return aes_ecb_decrypt(bk, ebid)


def make_ecc(federation_key: bytes, ebid: bytes, country_code: int) -> int:
    """ECC = first byte of AES-128(K_G, EBID) XOR CC."""
    check_len("K_G", federation_key, KEY_LEN)
    check_len("EBID", ebid, EBID_LEN)
    if not 0 <= country_code <= 0xFF:
        raise ValueError("country code is one byte")
    return aes_ecb_encrypt(federation_key, ebid)[0] ^ country_code


def country_of(federation_key: bytes, ebid: bytes, ecc: int) -> int:
    """Server side: the country code hidden in an ECC (XOR is its own inverse)."""
    return make_ecc(federation_key, ebid, ecc)


def service_data(ecc: int, ebid: bytes, version: int = ADVERT_VERSION) -> bytes:
    """ECC(1) ‖ EBID(16) ‖ version(1) ‖ reserved(2, zero: once the TX power, see above) = 20 bytes."""
    check_len("EBID", ebid, EBID_LEN)
    return bytes([ecc & 0xFF]) + ebid + bytes([version, 0, 0])


@dataclass(frozen=True)
class EbidEntry:
    period: int
    ebid: bytes
    ecc: int


@dataclass(frozen=True)
class EbidBatch:
    """A server-issued run of (period, EBID, ECC) for the coming periods."""

    period_seconds: int
    entries: tuple[EbidEntry, ...]

    def entry_at(self, t: float) -> EbidEntry | None:
        period = period_of(t, self.period_seconds)
        return next((e for e in self.entries if e.period == period), None)

    def last_period(self) -> int | None:
        return max((e.period for e in self.entries), default=None)


@dataclass(frozen=True)
class EbidScheme:
    name: ClassVar[SchemeName] = SchemeName.EBID
    batch: EbidBatch

    def broadcast_at(self, t: float, tx_power: int) -> Broadcast | None:
        """``tx_power`` is not put on air (see the module docstring); the backend has it from registration."""
        entry = self.batch.entry_at(t)
        if entry is None:
            return None
        start = entry.period * self.batch.period_seconds
        return Broadcast(
            scheme=SchemeName.EBID,
            ephemeral_id=entry.ebid,
            service_data=service_data(entry.ecc, entry.ebid),
            valid_from=float(start),
            valid_until=float(start + self.batch.period_seconds),
        )
