"""Fleet provisioning end to end, as an operator and a device run it: bundles issued by a real backend on
127.0.0.1, one installed with `proxitrace provision`, the device registered with its code, and the agent
then advertising the backend's EBIDs on the simulated BlueZ."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.keys import KeyRing
from agent.schemes.base import SchemeName
from agent.sim.air_log import ephemeral_id_of, instances
from agent.sim.harness import SimBed
from agent.store import Store

ROOT = Path(__file__).resolve().parent.parent.parent


def proxitrace(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`proxitrace backend serve` with its own key, on a free port; yields its config and URL."""
    config = tmp_path / "backend.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "backend"}"\nport = 0\n[ebid]\npow_difficulty = 8\n')
    assert proxitrace("backend", "keygen", "--config", str(config)).returncode == 0
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "backend", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stderr is not None
    url = next(m[1] for line in server.stderr if (m := re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)))
    yield config, url
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=15)


def issue(config: Path, url: str, out: Path, count: int) -> subprocess.CompletedProcess[str]:
    return proxitrace("backend", "enrol", "issue", "--config", str(config), "--count", str(count), "--out", str(out),
                      "--url", url)  # fmt: skip


def test_bundles_provision_register_and_advertise(tmp_path: Path, backend: tuple[Path, str]) -> None:
    config, url = backend
    out = tmp_path / "bundles"
    issued = issue(config, url, out, 3)
    assert issued.returncode == 0, issued.stderr
    bundles = sorted(out.glob("*.proxitrace.toml"))
    assert [p.name for p in bundles] == [f"device-{i:04d}.proxitrace.toml" for i in (1, 2, 3)]
    codes = [tomllib.loads(p.read_text())["enrolment_code"] for p in bundles]
    assert len(set(codes)) == 3 and all(codes)
    for path in [*bundles, out / "sheet.txt"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # each holds a code
    sheet = (out / "sheet.txt").read_text()
    assert all(f"device-{i:04d}" in sheet and code in sheet for i, code in zip((1, 2, 3), codes, strict=True))
    # No secret but the code: the bundle holds the public key only, never the backend's signing key.
    text = bundles[0].read_text()
    assert "PRIVATE KEY" not in text and "BEGIN PUBLIC KEY" in text
    private_pem = (tmp_path / "backend" / "signing-key.pem").read_text()
    assert private_pem.splitlines()[1] not in text

    etc, state = tmp_path / "etc", tmp_path / "device"
    done = proxitrace("--state-dir", str(state), "provision", str(bundles[0]), "--etc-dir", str(etc))
    assert done.returncode == 0, done.stderr
    assert "device device-0001: ebid configuration written" in done.stdout
    assert "registered (country code 1)" in done.stdout
    written = tomllib.loads((etc / "config.toml").read_text())
    assert written["agent"]["scheme"] == "ebid" and written["backend"]["url"] == url
    assert written["backend"]["public_key"] == str(etc / "backend-public.pem")  # a file path, as an operator writes
    marker = (etc / "provisioned.toml").read_text()
    assert "device-0001" in marker and codes[0] not in marker
    assert codes[0] not in (etc / "config.toml").read_text()

    # The code is single-use: a second device with a copy of the same bundle cannot register.
    copy = tmp_path / "etc2"
    again = proxitrace("--state-dir", str(tmp_path / "copy"), "provision", str(bundles[0]), "--etc-dir", str(copy))
    assert again.returncode == 1 and "enrolment code already used" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert not (copy / "provisioned.toml").exists()

    store = Store.open(state)
    try:
        issued_ebids = {e.ebid for e in KeyRing(store, SchemeName.EBID).ebid_batch().entries}
    finally:
        store.close()
    assert issued_ebids

    # this desk machine's clock may have no NTP client: accept it, as a desk test-bed does
    written_text = (etc / "config.toml").read_text()
    assert "accept_unsynchronised_clock_testbed = false" in written_text  # provisioning leaves the gate on
    (etc / "config.toml").write_text(
        written_text.replace(
            "accept_unsynchronised_clock_testbed = false", "accept_unsynchronised_clock_testbed = true"
        )
    )
    bed_config = {"adapters": [{"name": "hci0", "x": 0.0}, {"name": "hci1", "x": 1.0}], "tick_seconds": 0.2}
    with SimBed(bed_config, tmp_path / "bed") as bed:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(etc / "config.toml"), "--state-dir", str(state), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, **bed.env},
        )
        try:
            deadline = time.monotonic() + 60
            on_air: list[bytes] = []
            while time.monotonic() < deadline and not on_air:
                time.sleep(0.5)
                on_air = [ephemeral_id_of(i) for i in instances(bed.air_records())]
        finally:
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=30)
        assert on_air, err[-3000:]
        assert set(on_air) <= issued_ebids  # it advertises the EBIDs the backend issued to it
        assert agent.returncode == 0, err[-3000:]


def test_provision_refuses_bad_bundles_with_one_line(tmp_path: Path) -> None:
    cases = {
        "not-toml": "this is = = not toml",
        "wrong-format": 'format = 2\ndevice = "a"',
        "no-code": 'format = 1\ndevice = "a"\nscheme = "ebid"\nbackend_url = "https://b.example"\n'
        "backend_public_key = '''\n-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n'''",
        "bad-key": 'format = 1\ndevice = "a"\nscheme = "dp3t"\nbackend_url = "https://b.example"\n'
        'backend_public_key = "not a key"',
        "bad-url": 'format = 1\ndevice = "a"\nscheme = "dp3t"\nbackend_url = "ftp://b"\nbackend_public_key = "x"',
    }
    expected = {
        "not-toml": "not valid TOML",
        "wrong-format": "format: expected 1",
        "no-code": "enrolment_code: an EBID device needs one",
        "bad-key": "backend_public_key: not a public key",
        "bad-url": "backend_url: expected an http(s) URL",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.proxitrace.toml"
        path.write_text(text)
        etc = tmp_path / f"etc-{name}"
        result = proxitrace("--state-dir", str(tmp_path / "s"), "provision", str(path), "--etc-dir", str(etc))
        assert result.returncode == 1 and expected[name] in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert not etc.exists()  # nothing written for a refused bundle


def test_first_boot_finds_one_bundle_on_media_or_none(tmp_path: Path, backend: tuple[Path, str]) -> None:
    config, url = backend
    media = tmp_path / "media"
    (media / "usb0").mkdir(parents=True)
    empty = proxitrace("provision", "--from-media", str(media), "--etc-dir", str(tmp_path / "etc"))
    assert empty.returncode == 0 and "no provisioning bundle" in empty.stderr
    assert not (tmp_path / "etc").exists()
    assert issue(config, url, media / "usb0", 2).returncode == 0
    two = proxitrace("provision", "--from-media", str(media), "--etc-dir", str(tmp_path / "etc"))
    assert two.returncode == 1 and "2 provisioning bundles" in two.stderr
    (media / "usb0" / "device-0002.proxitrace.toml").unlink()
    one = proxitrace("--state-dir", str(tmp_path / "d"), "provision", "--from-media", str(media), "--etc-dir",
                     str(tmp_path / "etc"))  # fmt: skip
    assert one.returncode == 0 and "device device-0001" in one.stdout, one.stderr
    assert (tmp_path / "etc" / "provisioned.toml").exists()


def test_issue_with_out_needs_a_url_and_a_signing_key(tmp_path: Path) -> None:
    config = tmp_path / "backend.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "backend"}"\n')
    no_url = proxitrace("backend", "enrol", "issue", "--config", str(config), "--out", str(tmp_path / "b"))
    assert no_url.returncode == 2 and "--out needs --url" in no_url.stderr
    no_key = issue(config, "https://backend.example", tmp_path / "b", 1)
    assert no_key.returncode == 1 and "run proxitrace backend keygen first" in no_key.stderr
    assert not (tmp_path / "b").exists()
