"""[backend] public_key takes the key itself or the absolute path of a file holding it (as hw/README.md and
provisioning bundles write it); a path that cannot be used is named, in one line."""

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent import signing_keys
from agent.config import ConfigError, config_from_dict, sync_settings
from agent.sync import SyncSettings


def settings(public_key: str) -> SyncSettings:
    return sync_settings(config_from_dict({"backend": {"url": "https://b.example", "public_key": public_key}}))


@pytest.fixture
def key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.mark.parametrize("form", ["pem", "base64"])
def test_a_key_file_in_either_form(tmp_path: Path, key: ec.EllipticCurvePublicKey, form: str) -> None:
    path = tmp_path / "backend-public.pem"
    path.write_text(signing_keys.public_key_pem(key) if form == "pem" else signing_keys.public_key_base64(key) + "\n")
    loaded = settings(str(path)).public_key
    assert loaded is not None and loaded.public_numbers() == key.public_numbers()


def test_the_key_itself_still_works(key: ec.EllipticCurvePublicKey) -> None:
    loaded = settings(signing_keys.public_key_base64(key)).public_key
    assert loaded is not None and loaded.public_numbers() == key.public_numbers()


def test_unusable_key_files_are_named(tmp_path: Path) -> None:
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    cases = {
        str(tmp_path / "missing.pem"): f"backend.public_key: {tmp_path / 'missing.pem'}: no such key file",
        str(tmp_path): f"backend.public_key: {tmp_path}: is a directory, want a key file",
        str(garbled): f"backend.public_key: {garbled}: not a PEM public key",
    }
    for value, message in cases.items():
        with pytest.raises(ConfigError) as err:
            settings(value)
        assert str(err.value).startswith(message), str(err.value)


def test_a_pasted_key_is_never_taken_for_a_path(key: ec.EllipticCurvePublicKey) -> None:
    """Standard base64 may contain '/', but a DER key's base64 starts with 'M' (SEQUENCE), never '/'."""
    text = base64.b64encode(signing_keys.public_key_der(key)).decode()
    assert not text.startswith("/")
    assert settings(text).public_key is not None
