"""Following a plain GAEN key server (Google's exposure-notifications-server layout: an index.txt listing
export zips), with the real signed example file from that project: a device that heard one of its keys
matches it. A broken file is skipped and retried; an unchanged index costs one 304."""

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from support.backend_harness import backend_config, running_backend
from support.sync_devices import heard_gaen_key, make_device

from agent.clock import ManualClock
from agent.protocol.export import zip_export
from agent.risk import RiskSettings
from agent.schemes.base import SchemeName
from agent.signing_keys import parse_public_key
from agent.sync import KeyServer

VECTOR = json.loads((Path(__file__).resolve().parents[1] / "data" / "ens_example_export.json").read_text())
FOLDER = "exposureKeyExport-US"


@pytest.fixture
async def key_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path, list[tuple[str, int]]]]:
    """A static file server, as a CDN in front of a GAEN key server would be."""
    root = tmp_path / "cdn"
    (root / FOLDER).mkdir(parents=True)
    inputs = VECTOR["inputs"]
    zipped = zip_export(bytes.fromhex(inputs["export_bin"]), bytes.fromhex(inputs["export_sig"]))
    (root / FOLDER / "testExport-2-records-1-of-1.zip").write_bytes(zipped)
    (root / FOLDER / "index.txt").write_text(f"{FOLDER}/testExport-2-records-1-of-1.zip\n")
    served: list[tuple[str, int]] = []

    async def log(request: web.Request, response: web.StreamResponse) -> None:
        served.append((request.path, response.status))  # the final status (a file's 304 is decided late)

    app = web.Application()
    app.on_response_prepare.append(log)
    app.router.add_static("/", root)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url(f"/{FOLDER}/index.txt")), root, served
    finally:
        await server.close()


async def test_follow_a_gaen_key_server(
    tmp_path: Path,
    key_server: tuple[str, Path, list[tuple[str, int]]],
    signing_key: ec.EllipticCurvePrivateKey,
    http: aiohttp.ClientSession,
) -> None:
    index_url, root, served = key_server
    decoded = VECTOR["expected"]["decoded"]
    clock = ManualClock(decoded["end_timestamp"] + 3600)  # an hour after the file was cut, in 2020
    public = parse_public_key(base64.b64encode(bytes.fromhex(VECTOR["inputs"]["public_key_spki_der"])).decode())
    ks = KeyServer(index_url, public, decoded["signature_info"]["verification_key_id"])
    async with running_backend(backend_config(tmp_path / "backend"), clock, signing_key) as rb:
        device = make_device(tmp_path, "b", rb.url, rb, http, clock, SchemeName.GAEN, key_server=ks)
        real = decoded["keys"][0]
        device.store.add_windows(heard_gaen_key(bytes.fromhex(real["key_data"]), real["rolling_start_interval_number"]))

        outcome = await device.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
        assert (outcome.lists, outcome.keys, outcome.matched_keys, outcome.problems) == (1, 2, 1, ())
        assert not outcome.notify  # ten minutes at 54 dB: matched, but below SwissCovid's 15 minutes
        assert [status for _, status in served] == [200, 200]  # the index and the one file
        again = await device.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
        assert (again.lists, again.problems) == (0, ())
        assert served[2:] == [(f"/{FOLDER}/index.txt", 304)]  # unchanged index: one 304, nothing downloaded

        broken = root / FOLDER / "broken.zip"
        broken.write_bytes(b"PK\x03\x04 not really a zip")
        with (root / FOLDER / "index.txt").open("a") as f:
            f.write(f"{FOLDER}/broken.zip\n")
        outcome = await device.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
        assert outcome.lists == 0 and len(outcome.problems) == 1 and "broken.zip" in outcome.problems[0]
        broken.write_bytes(
            zip_export(bytes.fromhex(VECTOR["inputs"]["export_bin"]), bytes.fromhex(VECTOR["inputs"]["export_sig"]))
        )
        outcome = await device.client.sync(SchemeName.GAEN, RiskSettings(), 0.0)
        assert outcome.problems == () and outcome.lists == 0  # retried; same content as a list already matched
        assert device.store.credential("sync.keyserver")["files"] == sorted(  # type: ignore[index]
            [f"{FOLDER}/testExport-2-records-1-of-1.zip", f"{FOLDER}/broken.zip"]
        )
