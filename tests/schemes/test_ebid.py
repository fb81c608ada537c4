import os

import pytest

from agent.schemes import ebid
from agent.schemes.base import SERVICE_UUID16, DecodedAdvert, SchemeName, advertising_data
from agent.schemes.decoder import decode_advertising_data, decode_service_data


def test_ebid_is_aes128_of_puid_and_reverses() -> None:
    bk, puid = os.urandom(16), os.urandom(16)
    e = ebid.make_ebid(bk, puid)
    assert e != puid and len(e) == 16
    assert ebid.puid_of(bk, e) == puid
    assert ebid.puid_of(os.urandom(16), e) != puid


def test_known_answer_fips197() -> None:
    # FIPS-197 appendix C.1: AES-128 of 00112233..ff under key 00010203..0f.
    key = bytes(range(16))
    plain = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert ebid.make_ebid(key, plain).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_ecc_hides_and_reveals_the_country() -> None:
    kg = os.urandom(16)
    e = os.urandom(16)
    for cc in (0x21, 0x33, 0xFA):
        ecc = ebid.make_ecc(kg, e, cc)
        assert ebid.country_of(kg, e, ecc) == cc
    assert ebid.make_ecc(kg, e, 0x21) == ebid.make_ecc(kg, e, 0) ^ 0x21


def test_batch_returns_the_live_entry() -> None:
    entries = tuple(ebid.EbidEntry(p, os.urandom(16), p % 256) for p in range(100, 110))
    scheme = ebid.EbidScheme(ebid.EbidBatch(900, entries))
    b = scheme.broadcast_at(103 * 900 + 10, tx_power=-7)
    assert b is not None
    assert b.ephemeral_id == entries[3].ebid
    assert (b.valid_from, b.valid_until) == (103 * 900, 104 * 900)
    assert b.service_data == bytes([103]) + entries[3].ebid + bytes([1, 0, 0])
    assert scheme.broadcast_at(110 * 900, 0) is None
    assert scheme.batch.last_period() == 109


def test_advert_layout_and_round_trip() -> None:
    e = os.urandom(16)
    sd = ebid.service_data(0xAB, e)
    ad = advertising_data(SERVICE_UUID16[SchemeName.EBID], sd)
    assert len(ad) == 31
    decoded = decode_advertising_data(ad)
    assert isinstance(decoded, DecodedAdvert)
    assert decoded == DecodedAdvert(SchemeName.EBID, e, b"\xab", tx_power=None, ecc=0xAB, version=1)
    assert decode_service_data(0xFD64, sd) == decoded


@pytest.mark.parametrize("bad", [b"", bytes(15)])
def test_wrong_key_lengths_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="must be 16 bytes"):
        ebid.make_ebid(bad, bytes(16))


def test_successive_adverts_of_a_device_share_no_constant_byte_but_the_layout() -> None:
    """A byte that stays the same across one device's adverts links them unless every device sends the
    same value there. Two devices with different TX powers and their own EBIDs (as the backend issues
    them, ECC included): the only bytes constant across a day of one device's adverts are the version and
    the reserved zeros, and they are the same for the other device."""
    kg = os.urandom(16)

    def adverts(tx_power: int) -> list[bytes]:
        puid, out = os.urandom(16), []
        for p in range(1000, 1096):
            e = ebid.make_ebid(os.urandom(16), puid)
            scheme = ebid.EbidScheme(ebid.EbidBatch(900, (ebid.EbidEntry(p, e, ebid.make_ecc(kg, e, 0x21)),)))
            broadcast = scheme.broadcast_at(p * 900, tx_power)
            assert broadcast is not None
            out.append(broadcast.service_data)
        return out

    def constant(ads: list[bytes]) -> dict[int, int]:
        return {i: ads[0][i] for i in range(len(ads[0])) if len({a[i] for a in ads}) == 1}

    one, other = constant(adverts(-4)), constant(adverts(-20))
    assert one == other == {17: ebid.ADVERT_VERSION, 18: 0, 19: 0}
