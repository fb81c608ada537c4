"""Published lists: release buckets (never a live key), the v2 download API with its signatures, and the
static export folder a CDN could serve."""

import os
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict
from support.backend_calls import admin_tan, exchange, upload
from support.backend_harness import DAY, KEYS_PER_UPLOAD, T0, RunningBackend

from agent.clock import ManualClock
from agent.protocol import export, jws, wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey

TODAY = gaen.day_start_enin(gaen.enin(T0))
MIDNIGHT = (int(T0) // DAY + 1) * DAY


async def report(http: aiohttp.ClientSession, rb: RunningBackend, keys: list[PublishedKey], scheme: SchemeName) -> None:
    _, answer = await exchange(http, rb, await admin_tan(http, rb))
    body = wire.key_upload_body(scheme, keys, KEYS_PER_UPLOAD, None)
    assert (await upload(http, rb, answer["token"], body, scheme.value))[0] == 200


async def pull(
    http: aiohttp.ClientSession, rb: RunningBackend, tag: int | None = None, scheme: str = "gaen", **headers: str
) -> tuple[int, bytes, CIMultiDict[str]]:
    query = "" if tag is None else f"?lastKeyBundleTag={tag}"
    async with http.get(f"{rb.url}/v2/{scheme}/exposed{query}", headers=headers) as r:
        return r.status, await r.read(), r.headers.copy()


def verified_keys(rb: RunningBackend, body: bytes, key_length: int = 16) -> set[bytes]:
    content = export.verify_export(body, {"proxitrace": rb.public_key}, key_length=key_length)
    return {k.key_data for k in content.keys}


async def test_keys_go_out_only_after_their_day_and_their_bucket(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    yesterday, today = PublishedKey(os.urandom(16), TODAY - 144), PublishedKey(os.urandom(16), TODAY)
    await report(http, running, [yesterday, today], SchemeName.GAEN)  # at 10:00
    status, _, headers = await pull(http, running)
    assert status == 204 and headers["x-key-bundle-tag"] == str(int(T0) * 1000)  # the 10:00 bucket is open
    await clock.advance(2 * 3600)  # 12:00: the 10-12 bucket closed; yesterday's key is dead
    status, body, headers = await pull(http, running)
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert verified_keys(running, body) == {yesterday.key_data}
    tag = int(headers["x-key-bundle-tag"])
    assert tag == int(T0 + 7200) * 1000
    assert (await pull(http, running, tag))[0] == 204  # nothing new after that tag
    await clock.advance(MIDNIGHT - clock.now() + 7199)  # 01:59: today's key died at midnight, bucket open
    assert (await pull(http, running, tag))[0] == 204
    await clock.advance(1)  # 02:00: the first bucket after its day closed
    status, body, headers = await pull(http, running, tag)
    assert status == 200 and verified_keys(running, body) == {today.key_data}
    status, body, _ = await pull(http, running)  # a new device gets both
    assert verified_keys(running, body) == {yesterday.key_data, today.key_data}


async def test_signature_header_binds_body_tag_and_expiry(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    await report(http, running, [PublishedKey(os.urandom(16), TODAY - 144)], SchemeName.GAEN)
    await clock.advance(7200)
    status, body, headers = await pull(http, running)
    claims = jws.verify_response(body, headers["Signature"], running.public_key, now=clock.now())
    assert claims["key-bundle-tag"] == headers["x-key-bundle-tag"]
    assert claims["exp"] == int(clock.now()) + 7200
    assert claims["scheme"] == "gaen"
    with pytest.raises(jws.SignatureError, match="content-hash mismatch"):
        jws.verify_response(body + b"x", headers["Signature"], running.public_key, now=clock.now())
    with pytest.raises(jws.SignatureError, match="expired"):
        jws.verify_response(body, headers["Signature"], running.public_key, now=clock.now() + 7200 + 61)
    status, empty, headers = await pull(http, running, int(headers["x-key-bundle-tag"]))
    assert status == 204  # "nothing new" is signed too, with its tag
    assert (
        jws.verify_response(empty, headers["Signature"], running.public_key, now=clock.now())["key-bundle-tag"]
        == (headers["x-key-bundle-tag"])
    )


async def test_etag_and_cache_headers(running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock) -> None:
    await report(http, running, [PublishedKey(os.urandom(16), TODAY - 144)], SchemeName.GAEN)
    await clock.advance(7200 + 600)
    status, _body, headers = await pull(http, running)
    assert status == 200 and headers["Cache-Control"] == "public, max-age=6600"
    status, again, headers2 = await pull(http, running, None, **{"If-None-Match": headers["ETag"]})
    assert status == 304 and again == b"" and headers2["x-key-bundle-tag"] == headers["x-key-bundle-tag"]
    assert (await pull(http, running, None, **{"If-None-Match": '"other"'}))[0] == 200


async def test_dp3t_lists_have_the_same_shape(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    sk = PublishedKey(os.urandom(32), TODAY - 2 * 144)
    await report(http, running, [sk], SchemeName.DP3T)
    await clock.advance(MIDNIGHT - clock.now() + 7199)
    assert (await pull(http, running, scheme="dp3t"))[0] == 204  # the chain reached the upload day: held
    await clock.advance(1)
    status, body, _headers = await pull(http, running, scheme="dp3t")
    assert status == 200 and verified_keys(running, body, key_length=32) == {sk.key_data}
    assert (await pull(http, running))[0] == 204  # nothing on the GAEN list


async def test_bad_bundle_tag(running: RunningBackend, http: aiohttp.ClientSession) -> None:
    for bad in ("-5", "abc", "1" * 20, ""):
        async with http.get(f"{running.url}/v2/gaen/exposed", params={"lastKeyBundleTag": bad}) as r:
            assert r.status == 400 and "lastKeyBundleTag: expected" in (await r.json())["error"]


async def test_export_folder_index_and_retention(
    running: RunningBackend, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    first = PublishedKey(os.urandom(16), TODAY - 144)
    await report(http, running, [first], SchemeName.GAEN)
    await clock.advance(7200)
    second = PublishedKey(os.urandom(16), TODAY - 144)
    await report(http, running, [second], SchemeName.GAEN)
    await clock.advance(7200)
    await pull(http, running)  # serving publishes closed buckets too (the background task does it on time)
    folder: Path = running.backend.config.export_dir / "gaen"
    lines = (folder / "index.txt").read_text().splitlines()
    start = int(T0)
    assert lines == [f"gaen/{start}-{start + 7200}-00001.zip", f"gaen/{start + 7200}-{start + 14400}-00001.zip"]
    for line, key in zip(lines, (first, second), strict=True):
        data = (folder.parent / line).read_bytes()
        assert verified_keys(running, data) == {key.key_data}
        assert (folder.parent / line).stat().st_mode & 0o777 == 0o644
        async with http.get(f"{running.url}/exports/{line}") as r:
            assert r.status == 200 and await r.read() == data
    async with http.get(f"{running.url}/exports/gaen/index.txt") as r:
        assert (await r.text()).splitlines() == lines
    async with http.get(f"{running.url}/exports/gaen/..%2fbackend.db") as r:
        assert r.status == 404
    await clock.advance(15 * DAY)
    running.backend.maintain()
    assert (folder / "index.txt").read_text() == ""
    assert not list(folder.glob("*.zip"))
    assert running.backend.store.count_keys(SchemeName.GAEN) == 0
    assert (await pull(http, running))[0] == 204
