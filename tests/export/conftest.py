"""Fixtures for the list-format tests: the real ENS export and signing keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from support.exportkit import TEST_INFO, EnsExample, standard_export, zip_signed

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="session")
def ens() -> EnsExample:
    raw = json.loads((DATA / "ens_example_export.json").read_text())
    public_key = load_der_public_key(bytes.fromhex(raw["inputs"]["public_key_spki_der"]))
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    return EnsExample(
        export_bin=bytes.fromhex(raw["inputs"]["export_bin"]),
        export_sig=bytes.fromhex(raw["inputs"]["export_sig"]),
        public_key=public_key,
        raw=raw,
    )


@pytest.fixture(scope="session")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def other_signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def trusted(signer: ec.EllipticCurvePrivateKey) -> dict[str | tuple[str, str], ec.EllipticCurvePublicKey]:
    return {TEST_INFO.verification_key_id: signer.public_key()}


@pytest.fixture
def good_export(signer: ec.EllipticCurvePrivateKey) -> bytes:
    return standard_export(signer)


@pytest.fixture
def signed_zip(signer: ec.EllipticCurvePrivateKey) -> Callable[..., bytes]:
    """``zip_signed`` bound to the trusted test key."""

    def make(content: Any, **kwargs: Any) -> bytes:
        return zip_signed(content, signer, **kwargs)

    return make
