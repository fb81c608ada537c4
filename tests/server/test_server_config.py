import dataclasses
from pathlib import Path

import pytest

import agent.server
from agent.configfile import ConfigError
from agent.server.config import BackendConfig, backend_config_from_dict, load_backend_config

PEER = {"country_code": 2, "url": "http://127.0.0.1:9", "secret": "s" * 16}


def test_defaults_are_documented_values() -> None:
    config = backend_config_from_dict({})
    assert config == BackendConfig()
    assert config.lists.bucket_seconds == 7200
    assert config.lists.retention_days == 14
    assert config.signing_key_path == Path("/var/lib/proxitrace-backend/signing-key.pem")
    assert config.export_dir == Path("/var/lib/proxitrace-backend/exports")
    assert config.federation_key is None


def test_the_shipped_example_lists_every_default() -> None:
    example = Path(agent.server.__file__).parent / "backend.example.toml"
    assert load_backend_config(example) == BackendConfig()
    text = example.read_text()
    defaults = BackendConfig()
    for section in ("server", "signing", "tan", "upload", "lists", "ebid", "federation"):
        assert f"\n[{section}]\n" in text
        for f in dataclasses.fields(getattr(defaults, section)):
            if f.name != "peers":
                assert f"\n{f.name} = " in text, f"{section}.{f.name} is not in the example"


def test_file_values_and_peers(tmp_path: Path) -> None:
    path = tmp_path / "backend.toml"
    path.write_text(
        '[server]\ncountry_code = 7\ndata_dir = "/srv/pt"\n[federation]\nkey = "00112233445566778899aabbccddeeff"\n'
        '[[federation.peers]]\ncountry_code = 2\nurl = "http://127.0.0.1:8081"\nsecret = "0123456789abcdef"\n'
    )
    config = load_backend_config(path)
    assert config.server.country_code == 7
    assert config.export_dir == Path("/srv/pt/exports")
    assert config.federation_key == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert config.federation.peers[0].url == "http://127.0.0.1:8081"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"server": {"country_code": 300}}, "server.country_code: must be between 0 and 255"),
        ({"server": {"region": "us"}}, "server.region"),
        ({"server": {"admin_token": "short"}}, "server.admin_token: use at least 16"),
        ({"servr": {}}, "servr: unknown key"),
        ({"lists": {"bucket_seconds": 7000}}, "lists.bucket_seconds: must divide a day"),
        ({"ebid": {"pow_difficulty": 40}}, "ebid.pow_difficulty: must be between 0 and 32"),
        ({"ebid": {"pow_difficulty": "20"}}, "ebid.pow_difficulty: expected an integer"),
        ({"upload": {"keys_per_upload": 0}}, "upload.keys_per_upload"),
        ({"federation": {"key": "abc"}}, "federation.key: K_G must be 32 hex digits"),
        ({"federation": {"peers": [PEER]}}, "federation.key: federation peers need"),
        (
            {"federation": {"key": "0" * 32, "peers": [{**PEER, "url": "ftp://x"}]}},
            r"federation.peers\[0\].url: expected an http",
        ),
        (
            {"federation": {"key": "0" * 32, "peers": [{**PEER, "country_code": 1}]}},
            r"federation.peers\[0\].country_code: 1 is this backend's own",
        ),
        ({"federation": {"key": "0" * 32, "peers": [PEER, PEER]}}, r"federation.peers\[1\].country_code: 2 appears"),
        ({"federation": {"key": "0" * 32, "peers": [{**PEER, "secret": "x"}]}}, r"peers\[0\].secret"),
        ({"federation": {"key": "0" * 32, "peers": [{**PEER, "colour": 1}]}}, r"peers\[0\].colour: unknown key"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backend_config_from_dict(raw)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_backend_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_backend_config(bad)
