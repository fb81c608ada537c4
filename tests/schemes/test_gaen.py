from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from agent.schemes import gaen
from agent.schemes._crypto import hkdf16, hkdf_expand, hkdf_extract
from agent.schemes.base import DecodedAdvert, SchemeName, advertising_data
from agent.schemes.decoder import decode_advertising_data, decode_service_data


def test_tek_derivations_match_google_vectors(vectors: dict[str, Any]) -> None:
    v = vectors["gaen-tek-rpik-aemk"]
    tek = bytes.fromhex(v["inputs"]["tek"])
    assert gaen.rpik(tek).hex() == v["expected"]["rpik"]
    assert gaen.aemk(tek).hex() == v["expected"]["aemk"]
    assert gaen.enin(v["inputs"]["key_generation_unix_seconds"]) == v["expected"]["en_interval_number_of_key"]


def test_all_144_rpi_aem_pairs_match(vectors: dict[str, Any]) -> None:
    v = vectors["gaen-rpi-aem-144"]
    tek = bytes.fromhex(v["inputs"]["tek"])
    first = v["inputs"]["first_en_interval_number"]
    meta = bytes.fromhex(v["inputs"]["ble_metadata"])
    expected = v["expected"]["advertised"]
    assert len(expected) == 144
    batch = gaen.rpis(gaen.rpik(tek), first)
    key = gaen.aemk(tek)
    for entry, rpi in zip(expected, batch, strict=True):
        assert entry["en_interval_number"] == first + entry["index"]
        assert rpi.hex() == entry["rpi"]
        assert gaen.rpi(gaen.rpik(tek), entry["en_interval_number"]).hex() == entry["rpi"]
        assert gaen.encrypt_metadata(key, rpi, meta).hex() == entry["aem"]
        assert gaen.decrypt_metadata(key, rpi, bytes.fromhex(entry["aem"])) == meta


def test_metadata_versions_round_trip() -> None:
    v10 = gaen.parse_metadata(gaen.metadata(-8, gaen.VERSION_1_0))
    assert (v10.major, v10.minor, v10.tx_power, v10.calibration_confidence) == (1, 0, -8, None)
    for confidence in range(4):
        plain = gaen.metadata(12, gaen.VERSION_1_1, confidence)
        assert plain[0] == 0x50 | confidence << 2
        parsed = gaen.parse_metadata(plain)
        assert (parsed.major, parsed.minor, parsed.tx_power) == (1, 1, 12)
        assert parsed.calibration_confidence == confidence
    assert gaen.metadata(8) == bytes.fromhex("40080000")


@pytest.mark.parametrize("bad", [{"tx_power": 200}, {"tx_power": 0, "version": 0x70}])
def test_metadata_rejects_bad_values(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        gaen.metadata(**bad)


def test_wrong_tek_length_is_refused() -> None:
    with pytest.raises(ValueError, match="TEK must be 16 bytes"):
        gaen.rpik(bytes(15))


def test_scheme_broadcasts_the_rpi_of_the_current_interval(vectors: dict[str, Any]) -> None:
    v = vectors["gaen-rpi-aem-144"]
    tek = gaen.TemporaryExposureKey(bytes.fromhex(v["inputs"]["tek"]), v["inputs"]["first_en_interval_number"])
    scheme = gaen.GaenScheme((tek,), metadata_version=gaen.VERSION_1_0)
    t = (tek.rolling_start_interval_number + 5) * 600 + 123
    b = scheme.broadcast_at(t, tx_power=8)
    assert b is not None
    assert b.ephemeral_id.hex() == v["expected"]["advertised"][5]["rpi"]
    assert b.service_data[16:].hex() == v["expected"]["advertised"][5]["aem"]
    assert (b.valid_from, b.valid_until) == (t - 123, t - 123 + 600)
    assert scheme.broadcast_at(t + 144 * 600, 8) is None


def test_advert_is_exactly_31_bytes_and_round_trips() -> None:
    tek = gaen.new_tek(1_700_000_000)
    b = gaen.GaenScheme((tek,)).broadcast_at(1_700_000_000, tx_power=-4)
    assert b is not None
    ad = advertising_data(b.service_uuid16, b.service_data)
    assert len(ad) == 31
    assert ad[:11] == bytes.fromhex("0201 1a 03 03 6ffd 17 16 6ffd".replace(" ", ""))
    uuid = "0000fd6f-0000-1000-8000-00805f9b34fb"
    for decoded in (decode_advertising_data(ad), decode_service_data(uuid, b.service_data)):
        assert isinstance(decoded, DecodedAdvert)
        assert decoded.scheme is SchemeName.GAEN
        assert decoded.ephemeral_id == b.ephemeral_id
        plain = gaen.decrypt_metadata(gaen.aemk(tek.key), b.ephemeral_id, decoded.metadata)
        assert gaen.parse_metadata(plain).tx_power == -4


def test_new_tek_is_aligned_to_the_utc_day() -> None:
    tek = gaen.new_tek(1_700_000_000, random_bytes=lambda n: bytes(range(n)))
    assert tek.rolling_start_interval_number % 144 == 0
    assert tek.covers(gaen.enin(1_700_000_000))
    assert tek.key == bytes(range(16))


@given(st.binary(min_size=0, max_size=64), st.binary(max_size=40))
def test_fast_hkdf_equals_the_reference_hkdf(ikm: bytes, info: bytes) -> None:
    reference = HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(ikm)
    assert hkdf_expand(hkdf_extract(ikm), info) == reference
    assert hkdf16(ikm, info) == reference
