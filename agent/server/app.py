"""The aiohttp application: routes, error bodies, response-time padding and the background tasks.

Every call that reaches the store runs in a worker thread (``asyncio.to_thread``): a query blocks, and on
the event loop's thread one slow query (a large list, a busy PostgreSQL) would stall every other request,
a health check included. What must hold across threads and workers is in the database: single-use
codes, the failure limiters' counts (``agent.server.ratelimit``), list publishing's advisory lock.

Handlers stay thin: parse the request, call a service, shape the answer. Every refusal is a JSON
``{"error": "..."}`` with a fitting status, whether it comes from a service (``ApiError``), a body that
does not parse (``WireError`` → 400) or aiohttp itself (404, 405, 413 for an oversized body).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from agent.clock import Clock, day_of, day_to_date
from agent.protocol import answers, wire
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.server import buckets
from agent.server.config import BackendConfig
from agent.server.db import ServerStore
from agent.server.ebid import EbidBackend, RiskScorer
from agent.server.errors import ApiError
from agent.server.federation import FORWARD_PATH, Federation
from agent.server.lists import INDEX_FILE, Lists, ListSigner
from agent.server.portal import pages
from agent.server.portal.audit import API_SUFFIX, Action
from agent.server.portal.service import Portal, PortalError, ReportType, open_portal
from agent.server.ratelimit import WINDOW_SECONDS, FailureLimiter, new_secret
from agent.server.uploads import Uploads

log = logging.getLogger(__name__)
BUNDLE_TAG_HEADER = "x-key-bundle-tag"
SIGNATURE_HEADER = "Signature"
ACCESS_LOG_FORMAT = '"%r" %s %b %Tf'  # no client address: the backend keeps none
_EXPORT_NAME = re.compile(r"^(index\.txt|\d+-\d+-\d{5}\.zip)$")
_SCHEMES = {"gaen": SchemeName.GAEN, "dp3t": SchemeName.DP3T}
FEDERATION_KEY_META = "federation_key"
FAKE_TOKEN_KEY_META = "fake_token_key"
PADDED_PATHS = frozenset(
    {
        "/v1/onset",
        wire.TAN_CHECK_PATH,
        "/v2/gaen/exposed",
        "/v2/dp3t/exposed",
        "/v1/ebid/submission-tokens",
        "/v1/ebid/submissions",
    }
)


@dataclass(frozen=True)
class Backend:
    """Everything one backend instance is made of, for handlers, the CLI and tests."""

    config: BackendConfig
    clock: Clock
    signer: ListSigner
    store: ServerStore
    uploads: Uploads
    lists: Lists
    ebid: EbidBackend
    federation: Federation
    portal: Portal
    admin_limiter: FailureLimiter

    def maintain(self) -> None:
        """Publish closed buckets and delete what retention no longer allows, registrations of devices
        silent for longer than the retention window included (a device asks for a token at least at
        every status poll, so a silent one has gone: its pseudonym must not stay linkable for ever)."""
        self.lists.publish()
        now = self.clock.now()
        days = self.config.lists.retention_days
        oldest_interval = gaen.day_start_enin(gaen.enin(now)) - days * gaen.ROLLING_PERIOD
        oldest_period = int(now - days * 86_400) // self.config.ebid.period_seconds
        self.store.expire(now, oldest_interval, oldest_period, now - days * 86_400)
        self.store.purge_silent_registrations(day_of(now) - days)
        self.store.forget_guesses(now - WINDOW_SECONDS)


BACKEND: web.AppKey[Backend] = web.AppKey("backend", Backend)


def open_backend(
    config: BackendConfig,
    clock: Clock,
    signer: ListSigner,
    scorer: RiskScorer,
    store: ServerStore | None = None,
    limiter_secret: bytes | None = None,
) -> Backend:
    """The backend on ``config``'s store. ``limiter_secret`` keys the failure limiters' counts: the workers
    of one service must share it (``serve_workers`` draws it before forking), or each counts apart; by
    default a fresh one (``agent.server.ratelimit``)."""
    store = store or ServerStore(config.database)
    secret = limiter_secret or new_secret()
    limit = config.tan.max_failures_per_hour
    limiter = FailureLimiter(clock, store, secret, "codes", limit)
    challenges = FailureLimiter(clock, store, secret, "challenges", config.ebid.challenges_per_client_per_hour)
    federation = Federation(config, clock, store)
    kg = config.federation_key or store.meta_setdefault(FEDERATION_KEY_META, os.urandom(16))
    uploads = Uploads(config, clock, store, limiter, store.meta_setdefault(FAKE_TOKEN_KEY_META, os.urandom(32)))
    return Backend(
        config=config,
        clock=clock,
        signer=signer,
        store=store,
        uploads=uploads,
        lists=Lists(config, clock, store, signer),
        ebid=EbidBackend(config, clock, store, limiter, challenges, federation, kg, scorer),
        federation=federation,
        portal=open_portal(config, clock, store),
        admin_limiter=FailureLimiter(clock, store, secret, "admin", limit),
    )


def create_app(backend: Backend) -> web.Application:
    app = web.Application(
        client_max_size=backend.config.server.max_body_bytes,
        middlewares=[_errors, _padding(backend), _sign_answers(backend)],
    )
    app[BACKEND] = backend
    app.router.add_get("/v1/health", _health)
    app.router.add_post("/v1/onset", _onset)
    app.router.add_post(wire.TAN_CHECK_PATH, _tan_check)
    app.router.add_post("/v2/{scheme:gaen|dp3t}/exposed", _upload)
    app.router.add_get("/v2/{scheme:gaen|dp3t}/exposed", _exposed)
    app.router.add_get("/exports/{scheme:gaen|dp3t}/{name}", _export_file)
    app.router.add_post("/v1/ebid/challenge", _challenge)
    app.router.add_post("/v1/ebid/register", _register)
    app.router.add_post("/v1/ebid/token", _token)
    app.router.add_get("/v1/ebid/ebids", _ebids)
    app.router.add_get("/v1/ebid/submission-key", _submission_key)
    app.router.add_get("/v1/ebid/reregistration-key", _reregistration_key)
    app.router.add_post("/v1/ebid/submission-tokens", _submission_tokens)
    app.router.add_post("/v1/ebid/submissions", _submission)
    app.router.add_post("/v1/ebid/status", _status)
    app.router.add_post(FORWARD_PATH, _forwarded)
    app.router.add_post("/v1/admin/tans", _admin_tans)
    app.router.add_post("/v1/admin/enrolment-codes", _admin_enrolment)
    app.cleanup_ctx.append(_background)
    if backend.config.portal.enabled and not backend.config.portal.host:
        pages.mount(app, backend.portal)
    return app


def create_portal_app(backend: Backend) -> web.Application:
    """The portal on a listener of its own (``[portal] host``); the device API app then has none of it."""
    return pages.standalone_app(backend.portal)


# ---- middlewares and helpers -------------------------------------------------------------------------


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _json_error(exc.status, exc.message, exc.headers)
    except wire.WireError as exc:
        return _json_error(400, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return _json_error(413, f"body larger than {request.app[BACKEND].config.server.max_body_bytes} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json_error(exc.status, exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"})


def _padding(backend: Backend) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Answer TAN exchanges, uploads and reports no sooner than ``upload.min_response_seconds`` after
    they arrived, success or failure, so timing tells nothing. It measures elapsed time on the event
    loop's monotonic clock: this is about real duration, not the (maybe simulated) time of day."""
    minimum = backend.config.upload.min_response_seconds

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method != "POST" or request.path not in PADDED_PATHS or minimum <= 0:
            return await handler(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + minimum
        try:
            return await handler(request)
        finally:
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    return middleware


def _sign_answers(backend: Backend) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Sign every successful answer a device acts on (``agent.protocol.answers``): the body's hash, a
    short expiry, the request's nonce and its method and path. A malformed nonce is a 400 before the
    handler runs, so nothing is written for it."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in answers.SIGNED_ANSWER_PATHS:
            return await handler(request)
        nonce = request.headers.get(answers.NONCE_HEADER, "")
        if nonce and not answers.valid_nonce(nonce):
            raise ApiError(400, f"{answers.NONCE_HEADER}: expected {answers.NONCE_BYTES} bytes of base64url")
        response = await handler(request)
        if isinstance(response, web.Response) and 200 <= response.status < 300 and response.body is not None:
            body = bytes(response.body)  # type: ignore[arg-type]
            claims = answers.answer_claims(request.method, request.path, nonce)
            response.headers[SIGNATURE_HEADER] = backend.signer.answer(body, backend.clock.now(), claims)
        return response

    return middleware


async def _body(request: web.Request) -> object:
    """The request's JSON body; anything but ``application/json`` is 415, so a form or ``text/plain`` post
    from a web page (which a browser sends cross-site without asking) never reaches a handler."""
    if request.content_type != "application/json":
        raise ApiError(415, "Content-Type: expected application/json")
    return parse_json(await request.read())


def parse_json(raw: bytes) -> object:
    """``raw`` as JSON, every way it can fail a ``WireError`` (400): besides bad syntax, nesting deep
    enough to exhaust Python's recursion limit and an integer longer than its ``int_max_str_digits``
    raise errors ``json`` does not wrap, and both can be sent by anyone."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise wire.WireError("body: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise wire.WireError("body: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise wire.WireError(f"body: not valid JSON ({exc})") from None
    except ValueError:
        raise wire.WireError("body: a number too long to read") from None


def _query_int(request: web.Request, name: str, max_digits: int, hint: str) -> int | None:
    """An optional non-negative integer query parameter. ASCII digits only: ``str.isdigit`` also accepts
    "²" (which ``int`` then refuses) and Arabic-Indic digits (which ``int`` silently reads)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > max_digits:
        raise ApiError(400, f"{name}: {hint}")
    return int(raw)


def _client_address(request: web.Request, backend: Backend) -> str:
    if backend.config.server.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote or "unknown"


def _backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


def _scheme(request: web.Request) -> SchemeName:
    return _SCHEMES[request.match_info["scheme"]]


# ---- handlers ----------------------------------------------------------------------------------------


async def _health(request: web.Request) -> web.Response:
    b = _backend(request)
    c = b.config
    health = wire.Health(
        country_code=c.server.country_code,
        keys_per_upload=c.upload.keys_per_upload,
        bucket_seconds=c.lists.bucket_seconds,
        period_seconds=c.ebid.period_seconds,
        pow_difficulty=c.ebid.pow_difficulty,
        status_polls_per_day=c.ebid.status_polls_per_day,
    )
    return web.json_response(wire.health_body(health))


async def _onset(request: web.Request) -> web.Response:
    b = _backend(request)
    issued = await asyncio.to_thread(b.uploads.exchange, await _body(request), _client_address(request, b))
    return _json_bytes(wire.upload_token_bytes(issued))


async def _tan_check(request: web.Request) -> web.Response:
    b = _backend(request)
    grant = await asyncio.to_thread(b.uploads.check_tan, await _body(request), _client_address(request, b))
    return _json_bytes(wire.tan_grant_bytes(grant))


def _json_bytes(body: bytes) -> web.Response:
    """An answer sent as these exact (padded) bytes, never cached."""
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})


async def _upload(request: web.Request) -> web.Response:
    b = _backend(request)
    bearer = await asyncio.to_thread(b.uploads.bearer, request.headers.get("Authorization"))
    await asyncio.to_thread(b.uploads.upload_keys, _scheme(request), bearer, await _body(request))
    return web.json_response({"status": "accepted"})


async def _exposed(request: web.Request) -> web.Response:
    b = _backend(request)
    last = _query_int(
        request, "lastKeyBundleTag", 16, "expected a non-negative integer (ms), as sent in x-key-bundle-tag"
    )
    res = await asyncio.to_thread(b.lists.exposed, _scheme(request), last)
    headers = {
        BUNDLE_TAG_HEADER: str(res.tag),
        SIGNATURE_HEADER: res.signature,
        "Cache-Control": f"public, max-age={res.max_age}",
    }
    if not res.body:
        return web.Response(status=204, headers=headers)
    headers["ETag"] = res.etag
    if res.etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=res.body, content_type="application/zip", headers=headers)


async def _export_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not _EXPORT_NAME.match(name):
        raise ApiError(404, "no such export file")
    path = _backend(request).config.export_dir / request.match_info["scheme"] / name
    if not path.is_file():
        raise ApiError(404, "no such export file")
    content_type = "text/plain" if name == INDEX_FILE else "application/zip"
    return web.FileResponse(path, headers={"Content-Type": content_type})


async def _challenge(request: web.Request) -> web.Response:
    b = _backend(request)
    challenge = await asyncio.to_thread(b.ebid.challenge, _client_address(request, b))
    return web.json_response(wire.challenge_body(challenge))


async def _register(request: web.Request) -> web.Response:
    b = _backend(request)
    credentials = await asyncio.to_thread(b.ebid.register, await _body(request), _client_address(request, b))
    return web.json_response(wire.credentials_body(credentials), status=201)


async def _token(request: web.Request) -> web.Response:
    token = await asyncio.to_thread(_backend(request).ebid.access_token, await _body(request))
    return web.json_response(wire.access_token_body(token))


async def _ebids(request: web.Request) -> web.Response:
    b = _backend(request)
    periods = _query_int(request, "periods", 6, "expected a positive integer")
    rid = await asyncio.to_thread(b.ebid.registration_of, request.headers.get("Authorization"))
    batch = await asyncio.to_thread(b.ebid.ebids, rid, periods)
    return web.json_response(wire.ebid_batch_body(batch), headers={"Cache-Control": "no-store"})


async def _submission_key(request: web.Request) -> web.Response:
    keys = _backend(request).ebid.submission_public_keys()
    return web.json_response(wire.submission_keys_body(keys))


async def _reregistration_key(request: web.Request) -> web.Response:
    key = _backend(request).ebid.reregistration_public_key()
    return web.json_response(wire.submission_key_body(key))


async def _submission_tokens(request: web.Request) -> web.Response:
    b = _backend(request)
    redeemed, grant = await asyncio.to_thread(
        b.ebid.redeem_for_tokens, await _body(request), _client_address(request, b)
    )
    signed = await asyncio.to_thread(b.ebid.sign_tokens, redeemed, grant)
    return _json_bytes(wire.blind_signatures_bytes(signed, grant))


async def _submission(request: web.Request) -> web.Response:
    await asyncio.to_thread(_backend(request).ebid.submit, await _body(request))
    return web.json_response(wire.submission_receipt_body(), headers={"Cache-Control": "no-store"})


async def _status(request: web.Request) -> web.Response:
    b = _backend(request)
    rid = await asyncio.to_thread(b.ebid.registration_of, request.headers.get("Authorization"))
    verdict = await asyncio.to_thread(b.ebid.risk_verdict, rid)
    return web.json_response(wire.risk_verdict_body(verdict), headers={"Cache-Control": "no-store"})


async def _forwarded(request: web.Request) -> web.Response:
    b = _backend(request)
    raw = await request.read()
    origin = b.federation.authenticate(request.headers, "POST", FORWARD_PATH, raw)
    body = parse_json(raw)
    fresh = await asyncio.to_thread(b.ebid.accept_forward, origin, body)
    return web.json_response({"status": "stored" if fresh else "duplicate"})


SHARED_ADMIN_ACTOR = "(shared admin token)"


async def _admin_actor(request: web.Request) -> str:
    return await asyncio.to_thread(_admin_actor_of, request)


def _admin_actor_of(request: web.Request) -> str:
    """Who is calling the admin API, for the audit log: an officer by their API token
    (``proxitrace backend officer token NAME``), or the shared ``server.admin_token``. Wrong guesses are
    counted per client address like wrong TANs: a token issues TANs, so guessing one must cost as much."""
    b = _backend(request)
    with b.admin_limiter.attempt(_client_address(request, b), "wrong admin tokens") as guess:
        shared = b.config.server.admin_token
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if shared and hmac.compare_digest(given.encode(), shared.encode()):
            return SHARED_ADMIN_ACTOR
        officer = b.portal.accounts.by_api_token(given) if given else None
        if officer is not None:
            return officer.name + API_SUFFIX
        if not shared and not b.portal.accounts.any_api_tokens():
            raise ApiError(404, "admin API disabled (create an officer API token, or set server.admin_token)")
        guess.wrong()
        raise ApiError(401, "wrong admin token", {"WWW-Authenticate": "Bearer"})


async def _admin_tans(request: web.Request) -> web.Response:
    actor = await _admin_actor(request)
    b = _backend(request)
    body = await _body(request) if request.can_read_body else {}
    valid = wire.optional_int(body, "validSeconds", 60, 30 * 86_400, b.config.tan.valid_seconds)
    onset_day = wire.day_of_date(body.get("onset") if isinstance(body, dict) else None, "body.onset")
    onset = None if onset_day is None else day_to_date(onset_day)
    kind = body.get("reportType", ReportType.CONFIRMED_TEST.value) if isinstance(body, dict) else None
    if kind not in {t.value for t in ReportType}:
        raise ApiError(400, f"body.reportType: one of {', '.join(t.value for t in ReportType)}")
    try:
        issued = await asyncio.to_thread(b.portal.issue_tan, actor, onset, ReportType(kind), valid, "")
    except PortalError as exc:
        raise ApiError(400, str(exc)) from None
    return web.json_response({"tan": issued.code, "expiresAt": issued.expires}, status=201)


async def _admin_enrolment(request: web.Request) -> web.Response:
    actor = await _admin_actor(request)
    b = _backend(request)
    body = await _body(request) if request.can_read_body else {}
    count = wire.optional_int(body, "count", 1, 10_000, 1)
    valid = wire.optional_int(body, "validSeconds", 60, 366 * 86_400, b.config.ebid.enrolment_valid_seconds)
    codes, expires = await asyncio.to_thread(b.ebid.issue_enrolment_codes, count, valid)
    await asyncio.to_thread(
        b.portal.audit.record, b.clock.now(), actor, Action.ENROLMENT_ISSUED, f"{count} code(s) via the API"
    )
    return web.json_response({"codes": codes, "expiresAt": expires}, status=201)


# ---- background tasks --------------------------------------------------------------------------------


async def _maintenance(backend: Backend) -> None:
    """Publish each bucket as it closes (and catch up at start), then apply retention."""
    bucket = backend.config.lists.bucket_seconds
    while True:
        try:
            await asyncio.to_thread(backend.maintain)
        except Exception:  # a full disk must not stop the API; the next bucket retries
            log.exception("maintenance failed")
        now = backend.clock.now()
        await backend.clock.sleep(buckets.bucket_end(now, bucket) - now)


async def _background(app: web.Application) -> AsyncIterator[None]:
    backend = app[BACKEND]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    tasks = [
        asyncio.create_task(_maintenance(backend), name="backend-maintenance"),
        asyncio.create_task(backend.federation.run(session), name="backend-federation"),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await session.close()
    backend.portal.close()
    backend.store.close()
