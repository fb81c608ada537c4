"""proxitrace match: a signed list from a file against the local store, as a field engineer runs it."""

import base64
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from support.exportkit import standard_export

from agent.protocol.export import SignatureInfo
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.signing_keys import generate_signing_key, public_key_pem
from agent.store import SightingAggregator, Store

DATA = Path(__file__).resolve().parent.parent / "data"
INFO = SignatureInfo(verification_key_id="310", verification_key_version="v1")


def run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "--state-dir", str(state), "match", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_signed_list_with_a_contact_notifies_once(tmp_path: Path) -> None:
    now = time.time()
    tek = os.urandom(16)
    interval = gaen.enin(now - 3600)
    key = PublishedKey(tek, gaen.day_start_enin(interval), transmission_risk_level=5)
    store = Store.open(tmp_path / "state")
    agg = SightingAggregator()
    for i in range(2):  # two intervals, 10 minutes each at close range
        rpi = gaen.rpi(gaen.rpik(tek), interval + i)
        aem = gaen.encrypt_metadata(gaen.aemk(tek), rpi, gaen.metadata(-8))
        for s in range(0, 600, 5):
            agg.add(SchemeName.GAEN, rpi, (interval + i) * 600 + s, -52, None, aem)
    store.flush(agg)
    store.close()
    signer = generate_signing_key()
    keys = [key, *(PublishedKey(os.urandom(16), key.rolling_start_interval_number) for _ in range(300))]
    zip_bytes = standard_export(signer, keys, start=int(now) - 7200, end=int(now) - 60, signature_info=INFO)
    (tmp_path / "list.zip").write_bytes(zip_bytes)
    (tmp_path / "pub.pem").write_text(public_key_pem(signer.public_key()))
    out = run(
        tmp_path / "state", "--list", str(tmp_path / "list.zip"), "--public-key", str(tmp_path / "pub.pem"), "--json"
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "keys": 301,
        "matched_keys": 1,
        "already_processed": False,
        "notify": True,
        "region": "CH",
        "batch": "1/1",
    }
    again = run(tmp_path / "state", "--list", str(tmp_path / "list.zip"), "--public-key", str(tmp_path / "pub.pem"))
    assert again.returncode == 0 and "matched before" in again.stdout
    assert len(Store.open(tmp_path / "state").exposures()) == 1


def zipped(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def test_bad_lists_are_refused_in_one_line_and_change_nothing(tmp_path: Path) -> None:
    signer, other = generate_signing_key(), generate_signing_key()
    good = standard_export(
        signer, [PublishedKey(os.urandom(16), 2_800_000)], start=1, end=2, region="X", signature_info=INFO
    )
    (tmp_path / "other.pem").write_text(public_key_pem(other.public_key()))
    (tmp_path / "signer.pem").write_text(public_key_pem(signer.public_key()))
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        export_bin, export_sig = zf.read("export.bin"), zf.read("export.sig")
    tampered = export_bin[:-1] + bytes([export_bin[-1] ^ 1])  # a bit of the last key's fields
    cases = {
        "unsigned.zip": (zipped({"export.bin": export_bin}), "signer.pem"),
        "tampered.zip": (zipped({"export.bin": tampered, "export.sig": export_sig}), "signer.pem"),
        "wrong-signer.zip": (good, "other.pem"),
        "truncated.zip": (good[: len(good) // 2], "signer.pem"),
        "not-a-zip.zip": (b"hello", "signer.pem"),
    }
    why = {  # the reason each is refused, named in its one line
        "unsigned.zip": "missing export.sig",
        "tampered.zip": "bad signature",
        "wrong-signer.zip": "bad signature",
        "truncated.zip": "truncated or corrupt zip",
        "not-a-zip.zip": "not a zip archive",
    }
    state = tmp_path / "state"
    Store.open(state).close()
    before = (state / "agent.db").read_bytes()
    for name, (data, pem) in cases.items():
        (tmp_path / name).write_bytes(data)
        out = run(state, "--list", str(tmp_path / name), "--public-key", str(tmp_path / pem))
        assert out.returncode == 1, name
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(f"proxitrace: {name}:"), out.stderr
        assert "Traceback" not in out.stderr
        assert why[name] in out.stderr, out.stderr
    assert (state / "agent.db").read_bytes() == before


def test_the_real_signed_example_export_is_verified_and_matched(tmp_path: Path) -> None:
    """Google's example export (2020): its signature checks out with its published key; its keys are far
    outside this device's retention window, so nothing can match them — and the list is recorded."""
    example = json.loads((DATA / "ens_example_export.json").read_text())["inputs"]
    with zipfile.ZipFile(tmp_path / "example.zip", "w") as z:
        z.writestr("export.bin", bytes.fromhex(example["export_bin"]))
        z.writestr("export.sig", bytes.fromhex(example["export_sig"]))
    (tmp_path / "example.pub").write_text(base64.b64encode(bytes.fromhex(example["public_key_spki_der"])).decode())
    out = run(
        tmp_path / "state",
        "--list",
        str(tmp_path / "example.zip"),
        "--public-key",
        str(tmp_path / "example.pub"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["keys"], result["matched_keys"], result["notify"], result["region"]) == (2, 0, False, "US")
