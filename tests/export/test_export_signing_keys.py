"""Signing keys on disk: 0600 whatever the umask, never silently replaced, clear errors for bad files."""

from __future__ import annotations

import base64
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from support.exportkit import EnsExample

from agent.signing_keys import (
    SigningKeyError,
    generate_key_file,
    generate_signing_key,
    load_private_key,
    load_public_key,
    parse_public_key,
    private_key_pem,
    public_key_base64,
    public_key_der,
    public_key_pem,
    save_private_key,
)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask, so a file that comes out 0600 owes it to the code, not the environment."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def same_key(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


def test_generate_save_load_round_trip(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "keys" / "signing.pem"
    key = generate_key_file(path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert load_private_key(path).private_numbers() == key.private_numbers()
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_file_is_private_from_the_moment_it_exists(
    tmp_path: Path, open_umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mode is given to open() itself: no chmod afterwards, so no moment where others could read."""
    calls: list[tuple[str, int]] = []
    real_open, real_chmod = os.open, os.chmod

    def spy_open(path: str, flags: int, mode: int = 0o777, *args: object, **kwargs: object) -> int:
        calls.append(("open", mode))
        return real_open(path, flags, mode, *args, **kwargs)  # type: ignore[arg-type]

    def spy_chmod(*args: object, **kwargs: object) -> None:
        calls.append(("chmod", 0))
        real_chmod(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "chmod", spy_chmod)
    save_private_key(generate_signing_key(), tmp_path / "k.pem")
    assert calls == [("open", 0o600)]


def test_an_existing_key_is_never_replaced_silently(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    first = generate_key_file(path)
    with pytest.raises(SigningKeyError) as err:
        save_private_key(generate_signing_key(), path)
    assert err.value.reason == f"{path}: already exists, not replacing a signing key"
    assert load_private_key(path).private_numbers() == first.private_numbers()


def test_overwrite_replaces_atomically_and_stays_private(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "signing.pem"
    generate_key_file(path)
    second = generate_signing_key()
    save_private_key(second, path, overwrite=True)
    assert load_private_key(path).private_numbers() == second.private_numbers()
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.pem"]  # no temporary file left behind


def test_refuses_to_save_a_key_of_another_type(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="want an EC P-256 private key"):
        save_private_key(ec.generate_private_key(ec.SECP384R1()), tmp_path / "k.pem")  # type: ignore[arg-type]
    assert not (tmp_path / "k.pem").exists()


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty key file"),
        (b"   \n", "empty key file"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a PEM private key (garbled or wrong format)",
        ),
        (b"\x00\x01binary garbage", "not a PEM private key (garbled or wrong format)"),
        (b"x" * 70_000, "over 65536 bytes, not a key file"),
        (_pem(rsa.generate_private_key(65537, 2048)), "an RSA key, want an EC P-256 private key"),
        (_pem(ed25519.Ed25519PrivateKey.generate()), "an Ed25519 key, want an EC P-256 private key"),
        (
            _pem(ec.generate_private_key(ec.SECP384R1())),
            "an EC key on secp384r1, want an EC P-256 private key",
        ),
        (
            public_key_pem(generate_signing_key().public_key()).encode(),
            "holds a public key, want the private signing key",
        ),
        (
            generate_signing_key().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
            "private key is encrypted; want an unencrypted PEM key",
        ),
    ],
)
def test_bad_private_key_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(SigningKeyError) as err:
        load_private_key(path)
    assert err.value.reason == f"{path}: {reason}"


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError) as err:
        load_private_key(tmp_path / "nope.pem")
    assert err.value.reason == f"{tmp_path / 'nope.pem'}: no such key file"


def test_directory_instead_of_key_file(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError) as err:
        load_public_key(tmp_path)
    assert err.value.reason == f"{tmp_path}: is a directory, want a key file"


def test_readable_key_file_is_loaded_with_a_warning_that_names_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "signing.pem"
    key = generate_signing_key()
    path.write_bytes(private_key_pem(key))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="agent.signing_keys"):
        assert load_private_key(path).private_numbers() == key.private_numbers()
    assert "chmod 600" in caplog.text and "mode 644" in caplog.text
    assert "PRIVATE" not in caplog.text and str(key.private_numbers().private_value) not in caplog.text


# ---------------------------------------------------------------------------------------------- public key


def test_public_key_forms_round_trip() -> None:
    public = generate_signing_key().public_key()
    pem = public_key_pem(public)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    for form in (pem, pem.encode(), public_key_der(public), public_key_base64(public)):
        assert same_key(parse_public_key(form), public)
    assert "\n" not in public_key_base64(public)


def test_public_key_forms_of_the_real_ens_key(ens: EnsExample) -> None:
    der = bytes.fromhex(ens.raw["inputs"]["public_key_spki_der"])
    point = bytes.fromhex(ens.raw["inputs"]["public_key_uncompressed_point"])
    assert public_key_der(ens.public_key) == der
    assert public_key_base64(ens.public_key) == base64.b64encode(der).decode()
    assert same_key(parse_public_key(base64.b64encode(point).decode()), ens.public_key)
    assert same_key(parse_public_key(point), ens.public_key)
    assert same_key(parse_public_key("  " + base64.b64encode(der).decode() + "\n"), ens.public_key)


def test_load_public_key_file(tmp_path: Path) -> None:
    public = generate_signing_key().public_key()
    path = tmp_path / "pub.pem"
    path.write_text(public_key_pem(public))
    assert same_key(load_public_key(path), public)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not a key at all", "not a public key"),
        ("QUJD", "not a public key"),  # base64 of b"ABC"
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a PEM public key"),
        (private_key_pem(generate_signing_key()).decode(), "holds a private key, want a public key"),
        ("BA" + "A" * 85 + "=", "the EC point is not on P-256"),  # 0x04 then zeros
        (
            public_key_pem(ec.generate_private_key(ec.SECP384R1()).public_key()),
            "an EC key on secp384r1, want an EC P-256 public key",
        ),
        (
            public_key_pem(rsa.generate_private_key(65537, 2048).public_key()),  # type: ignore[arg-type]
            "an RSA key, want an EC P-256 public key",
        ),
    ],
)
def test_bad_public_keys(text: str, reason: str) -> None:
    with pytest.raises(SigningKeyError) as err:
        parse_public_key(text, source="config key")
    assert err.value.reason.startswith(f"config key: {reason}")
