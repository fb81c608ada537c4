"""Apple/Google Exposure Notification (GAEN) v1.2 crypto, metadata and the 31-byte advert.

Implemented from the public EN cryptography specification; checked against Google's published vectors.
We read GAEN beacons from phones and can broadcast them, so a Pi can take part in a GAEN-based deployment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from agent.schemes._crypto import aes_ctr, aes_ecb_encrypt, check_len, hkdf16
from agent.schemes.base import Broadcast, SchemeName

INTERVAL_SECONDS = 600
ROLLING_PERIOD = 144
TEK_LEN = 16
RPI_LEN = 16
AEM_LEN = 4
RPIK_INFO = b"EN-RPIK"
AEMK_INFO = b"EN-AEMK"
_RPI_PREFIX = b"EN-RPI" + bytes(6)

VERSION_1_0 = 0x40
VERSION_1_1 = 0x50
CALIBRATION_CONFIDENCE = {"lowest": 0, "low": 1, "medium": 2, "high": 3}


def enin(unix_seconds: float) -> int:
    """EN interval number: 10-minute intervals since the epoch."""
    return int(unix_seconds) // INTERVAL_SECONDS


def day_start_enin(interval: int) -> int:
    return interval - interval % ROLLING_PERIOD


def rpik(tek: bytes) -> bytes:
    check_len("TEK", tek, TEK_LEN)
    return hkdf16(tek, RPIK_INFO)


def aemk(tek: bytes) -> bytes:
    check_len("TEK", tek, TEK_LEN)
    return hkdf16(tek, AEMK_INFO)


def padded_rpi_blocks(first_interval: int, count: int) -> bytes:
    return b"".join(_RPI_PREFIX + (first_interval + i).to_bytes(4, "little") for i in range(count))


def rpis(rpi_key: bytes, first_interval: int, count: int = ROLLING_PERIOD) -> list[bytes]:
    """The RPIs of ``count`` consecutive intervals, in one AES call."""
    stream = aes_ecb_encrypt(rpi_key, padded_rpi_blocks(first_interval, count))
    return [stream[i : i + RPI_LEN] for i in range(0, len(stream), RPI_LEN)]


def rpi(rpi_key: bytes, interval: int) -> bytes:
    return aes_ecb_encrypt(rpi_key, _RPI_PREFIX + interval.to_bytes(4, "little"))


def metadata(tx_power: int, version: int = VERSION_1_0, calibration_confidence: int = 0) -> bytes:
    """Bluetooth metadata: [version, TX power (int8 dBm), 0, 0]; v1.1 carries calibration confidence."""
    if not -128 <= tx_power <= 127:
        raise ValueError(f"TX power {tx_power} dBm does not fit an int8")
    if version == VERSION_1_1:
        if not 0 <= calibration_confidence <= 3:
            raise ValueError("calibration confidence is 0..3")
        version_byte = VERSION_1_1 | (calibration_confidence << 2)
    elif version == VERSION_1_0:
        version_byte = VERSION_1_0
    else:
        raise ValueError(f"unknown metadata version 0x{version:02x}")
    return bytes([version_byte, tx_power & 0xFF, 0, 0])


def encrypt_metadata(aem_key: bytes, rpi_value: bytes, plain: bytes) -> bytes:
    return aes_ctr(aem_key, rpi_value, plain)


decrypt_metadata = encrypt_metadata


@dataclass(frozen=True)
class Metadata:
    """Decrypted metadata; ``major``/``minor`` from the version byte."""

    major: int
    minor: int
    tx_power: int
    calibration_confidence: int | None


def parse_metadata(plain: bytes) -> Metadata:
    check_len("metadata", plain, AEM_LEN)
    version = plain[0]
    major, minor = version >> 6, (version >> 4) & 0x3
    tx = int.from_bytes(plain[1:2], "big", signed=True)
    confidence = (version >> 2) & 0x3 if (major, minor) == (1, 1) else None
    return Metadata(major=major, minor=minor, tx_power=tx, calibration_confidence=confidence)


@dataclass(frozen=True)
class TemporaryExposureKey:
    key: bytes
    rolling_start_interval_number: int
    rolling_period: int = ROLLING_PERIOD

    def covers(self, interval: int) -> bool:
        start = self.rolling_start_interval_number
        return start <= interval < start + self.rolling_period


def new_tek(t: float, random_bytes: Callable[[int], bytes] = os.urandom) -> TemporaryExposureKey:
    """A fresh TEK for the UTC day containing ``t``."""
    return TemporaryExposureKey(random_bytes(TEK_LEN), day_start_enin(enin(t)))


def service_data(rpi_value: bytes, aem: bytes) -> bytes:
    return rpi_value + aem


@dataclass(frozen=True)
class GaenScheme:
    """Broadcasts the RPI of the TEK that covers the current interval."""

    name: ClassVar[SchemeName] = SchemeName.GAEN
    keys: tuple[TemporaryExposureKey, ...]
    metadata_version: int = VERSION_1_1
    calibration_confidence: int = 0

    def broadcast_at(self, t: float, tx_power: int) -> Broadcast | None:
        interval = enin(t)
        tek = next((k for k in self.keys if k.covers(interval)), None)
        if tek is None:
            return None
        rpi_value = rpi(rpik(tek.key), interval)
        plain = metadata(tx_power, self.metadata_version, self.calibration_confidence)
        aem = encrypt_metadata(aemk(tek.key), rpi_value, plain)
        return Broadcast(
            scheme=SchemeName.GAEN,
            ephemeral_id=rpi_value,
            service_data=service_data(rpi_value, aem),
            valid_from=float(interval * INTERVAL_SECONDS),
            valid_until=float((interval + 1) * INTERVAL_SECONDS),
        )
