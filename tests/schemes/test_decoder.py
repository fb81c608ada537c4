import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.schemes.base import DecodedAdvert, Rejected, SchemeName, uuid128
from agent.schemes.decoder import decode_advertising_data, decode_service_data

OUR_UUIDS = [0xFD68, 0xFD6F, 0xFD64]
uuid_values = st.one_of(
    st.sampled_from(OUR_UUIDS),
    st.sampled_from([uuid128(u) for u in OUR_UUIDS]),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(max_size=50),
)


@given(uuid_values, st.binary(max_size=600))
def test_service_data_decoder_never_raises(uuid: str | int, data: bytes) -> None:
    result = decode_service_data(uuid, data)
    assert isinstance(result, DecodedAdvert | Rejected)
    if isinstance(result, DecodedAdvert):
        assert len(data) == 20 and len(result.ephemeral_id) == 16


@given(st.binary(max_size=300))
def test_advertising_data_decoder_never_raises(payload: bytes) -> None:
    assert isinstance(decode_advertising_data(payload), DecodedAdvert | Rejected)


@pytest.mark.parametrize(
    ("uuid", "data", "reason"),
    [
        (0xFD6F, bytes(19), "gaen service data is 19 bytes, expected 20"),
        (0xFD68, bytes(21), "dp3t service data is 21 bytes, expected 20"),
        (0xFD64, bytes(17) + b"\x09" + bytes(2), "unknown EBID advert version 9"),
        (0x180F, bytes(20), "not a contact-tracing service UUID"),
        ("garbage", bytes(20), "not a contact-tracing service UUID"),
        (None, bytes(20), "UUID is not a string or an integer"),
    ],
)
def test_rejections_say_why(uuid: object, data: bytes, reason: str) -> None:
    result = decode_service_data(uuid, data)  # type: ignore[arg-type]
    assert result == Rejected(reason)


def test_bad_data_types_are_rejected_not_raised() -> None:
    assert decode_service_data(0xFD6F, "twenty characters!!!") == Rejected("service data is not bytes")  # type: ignore[arg-type]


def test_uuid_forms_are_equivalent() -> None:
    data = bytes(range(20))
    forms: list[str | int] = [0xFD6F, "fd6f", "0xFD6F", "0000FD6F-0000-1000-8000-00805F9B34FB"]
    results = {decode_service_data(f, data) for f in forms}
    assert len(results) == 1
    only = results.pop()
    assert isinstance(only, DecodedAdvert) and only.scheme is SchemeName.GAEN


def test_advertising_data_errors() -> None:
    assert decode_advertising_data(bytes.fromhex("020106")) == Rejected("no 16-bit service data in the payload")
    assert decode_advertising_data(bytes.fromhex("0516aaaa0102")) == Rejected(
        "service data present, but not under a contact-tracing UUID"
    )
    assert decode_advertising_data(bytes.fromhex("1716")).reason.startswith("AD structure at offset 0")  # type: ignore[union-attr]
