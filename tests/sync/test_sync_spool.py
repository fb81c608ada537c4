"""List downloads go to a file, not to memory: the body is written to the sink as it arrives and refused
as soon as it passes the limit (declared or not), an error answer is still read as one, and the daemon's
spool file is a nameless 0600 file in the state directory. A real aiohttp server on 127.0.0.1."""

import io
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.clock import ManualClock
from agent.store import Store
from agent.sync import BackendClient, BackendRefused, ListRejected, SyncService, SyncSettings

BODY = os.urandom(10_000)


async def sized(request: web.Request) -> web.Response:
    return web.Response(body=BODY)


async def undeclared(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(0, len(BODY), 1000):
        await response.write(BODY[i : i + 1000])
    await response.write_eof()
    return response


async def missing(request: web.Request) -> web.Response:
    return web.json_response({"error": "no such list"}, status=404)


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/sized", sized)
    app.router.add_get("/undeclared", undeclared)
    app.router.add_get("/missing", missing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def client(base: str) -> AsyncIterator[BackendClient]:
    async with aiohttp.ClientSession() as session:
        # These lists are fetched on the shared session; a one-off session (EBID submissions) is never asked for.
        yield BackendClient(session, base, lambda *_: None, aiohttp.ClientSession)


async def test_a_body_within_the_limit_is_written_to_the_sink_not_returned(client: BackendClient) -> None:
    for path in ("/sized", "/undeclared"):
        sink = io.BytesIO()
        answer = await client.get(client.base_url + path, sink=sink, max_bytes=len(BODY))
        assert (answer.status, answer.body, sink.getvalue()) == (200, b"", BODY)


@pytest.mark.parametrize("path", ["/sized", "/undeclared"])
async def test_a_body_past_the_limit_is_refused_while_it_streams(client: BackendClient, path: str) -> None:
    sink = io.BytesIO()
    with pytest.raises(ListRejected, match="exceeds the 4000-byte limit"):
        await client.get(client.base_url + path, sink=sink, max_bytes=4000)
    assert len(sink.getvalue()) <= 4000  # never more than the limit on disk


async def test_an_error_answer_is_read_as_one_and_nothing_is_spooled(client: BackendClient) -> None:
    sink = io.BytesIO()
    with pytest.raises(BackendRefused, match="no such list"):
        await client.get(client.base_url + "/missing", sink=sink, max_bytes=4000)
    assert sink.getvalue() == b""


async def test_the_spool_is_a_nameless_private_file_in_the_state_dir(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    before = set((tmp_path / "state").iterdir())
    async with aiohttp.ClientSession() as session:
        service = SyncService(session, SyncSettings("https://backend.invalid", None), ManualClock(0.0), store)
        with service.spool() as spool:
            spool.write(BODY)
            info = os.fstat(spool.fileno())
            assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_nlink == 0
            assert os.readlink(f"/proc/self/fd/{spool.fileno()}").startswith(f"{tmp_path / 'state'}/")
            assert set((tmp_path / "state").iterdir()) == before
    store.close()
