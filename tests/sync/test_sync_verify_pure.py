"""The list verifier is a pure function: the same bytes, key, last tag and time always give the same
verdict, with no network and no store. Each case hands it a response as the backend would send it, in a
file as the daemon spools it (here ``io.BytesIO``)."""

import io
import os
import zipfile
from typing import BinaryIO

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.exportkit import standard_export

from agent.protocol.export import SignatureInfo, zip_export
from agent.protocol.jws import sign_response
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sync.verify import BUNDLE_TAG_HEADER, Refusal, VerifiedPull, verify_pull

NOW = 1_763_978_400.0
TAG = 1_763_971_200_000
KEY = ec.generate_private_key(ec.SECP256R1())
INFO = SignatureInfo(verification_key_id="proxitrace", verification_key_version="v1")


def response(
    tag: int = TAG, claims_tag: int | None = None, scheme: str = "gaen", body: bytes | None = None
) -> tuple[dict[str, str], bytes, list[PublishedKey]]:
    keys = [PublishedKey(os.urandom(16), 2_939_000)]
    if body is None:
        body = standard_export(KEY, keys, start=int(NOW) - 7200, end=int(NOW) - 60, region="XX", signature_info=INFO)
    claims = {"key-bundle-tag": str(tag if claims_tag is None else claims_tag), "scheme": scheme}
    headers = {
        BUNDLE_TAG_HEADER: str(tag),
        "Signature": sign_response(body, KEY, now=NOW, ttl=7200, extra_claims=claims),
    }
    return headers, body, keys


def verify(
    headers: dict[str, str], body: bytes, last: int | None = None, status: int = 200, now: float = NOW
) -> VerifiedPull | Refusal:
    source = io.BytesIO(body)
    return verify_pull(SchemeName.GAEN, status, headers, source, KEY.public_key(), "proxitrace", "b", last, now)


def test_a_good_list_is_verified_with_its_keys_and_tag() -> None:
    headers, body, keys = response()
    got = verify(headers, body, last=TAG - 1)
    assert isinstance(got, VerifiedPull) and got.tag == TAG
    [verified] = got.lists
    [[key]] = verified.export.keys()
    assert key == keys[0] and verified.source == f"b gaen {TAG}"
    again = verify(headers, body, last=TAG - 1)  # same input, same verdict
    assert isinstance(again, VerifiedPull) and (again.tag, again.lists[0].digest) == (TAG, verified.digest)
    assert verified.export.summary == again.lists[0].export.summary


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("replayed", "replayed (bundle tag"),
        ("other tag signed", "the bundle tag is not the one that was signed"),
        ("other scheme", "signed for another scheme"),
        ("no signature", "unsigned response"),
        ("expired", "Signature header refused"),
        ("body swapped", "Signature header refused"),
    ],
)
def test_each_refusal_names_its_reason(case: str, reason: str) -> None:
    headers, body, _ = response(
        claims_tag=TAG + 1 if case == "other tag signed" else None, scheme="dp3t" if case == "other scheme" else "gaen"
    )
    last, now = (TAG if case == "replayed" else None), (NOW + 86_400 if case == "expired" else NOW)
    if case == "no signature":
        del headers["Signature"]
    if case == "body swapped":
        body = body + b"\x00"
    got = verify(headers, body, last=last, now=now)
    assert isinstance(got, Refusal) and reason in got.reason


def test_nothing_new_is_an_empty_pull_that_keeps_the_tag() -> None:
    headers, _, _ = response(body=b"")
    assert verify(headers, b"", last=TAG, status=204) == VerifiedPull((), TAG)


def test_a_signed_answer_whose_file_was_processed_gives_its_tag_without_its_export_being_read() -> None:
    _, good, _ = response()
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        export_sig = zf.read("export.sig")
    body = zip_export(b"\x00" * 64, export_sig)  # an export.bin that would be refused, were it read
    headers, _, _ = response(body=body)
    asked: list[bytes] = []

    def known(source: BinaryIO) -> bool:
        asked.append(source.read())
        return True

    source = io.BytesIO(body)
    args = (SchemeName.GAEN, 200, headers, source, KEY.public_key(), "proxitrace", "b", TAG - 1, NOW)
    assert verify_pull(*args, processed_before=known) == VerifiedPull((), TAG)
    assert asked and isinstance(verify_pull(*args), Refusal)  # not recognised: verified, and refused
    headers["Signature"] = response()[0]["Signature"]  # signed for another body: its tag is not taken
    asked.clear()
    refused = verify_pull(*args, processed_before=known)
    assert isinstance(refused, Refusal) and "Signature header refused" in refused.reason and not asked
