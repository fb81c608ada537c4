"""The backend over HTTP, and nothing else: requests, bounded reads, status codes, JSON and wire bodies.

It keeps no state beyond the HTTP session and knows no store, key ring or risk model, so every method is
one request and its answer. Failures come out sorted by what the caller should do (``agent.sync.errors``):
network trouble, 5xx and 429 are ``BackendUnavailable`` (retry later), other 4xx ``BackendRefused``, an
answer that does not parse a ``SyncError`` naming the path.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import aiohttp

from agent.protocol import answers, wire
from agent.schemes import ebid
from agent.schemes.base import SchemeName
from agent.schemes.published import ReportType
from agent.sync.errors import AnswerRejected, BackendRefused, BackendUnavailable, ListRejected, NotConfigured, SyncError
from agent.sync.settings import SyncSettings

MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024
"""The largest answer held in memory (JSON, an index). Lists are written to a file instead, up to the
limit the caller gives (the export verifier's archive limit)."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})
"""Refused, all of them: the backend never redirects, and following one would re-send a TAN, a client
secret or a token (a 307 keeps the body) to wherever it points, or drop https for http. Same-origin
redirects are refused too: an operator who moves the API changes ``backend.url``."""
_T = TypeVar("_T")

Progress = Callable[[int, int | None], None]
"""Called as work advances: (done, total or None). Bytes for downloads, tries for the proof of work."""


def tls_context(settings: SyncSettings) -> ssl.SSLContext:
    """Certificates checked and host names matched, always; with ``ca_file`` only that CA is trusted
    (``create_default_context`` loads the system store only when given no CA of its own)."""
    try:
        return ssl.create_default_context(cafile=settings.ca_file or None)
    except FileNotFoundError:
        raise NotConfigured(f"backend.ca_file: {settings.ca_file}: no such file") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise NotConfigured(f"backend.ca_file: cannot load {settings.ca_file}: {exc}") from None


def open_session(settings: SyncSettings, timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientSession:
    """The HTTP session every request to the backend (and its key server) goes through."""
    connector = aiohttp.TCPConnector(ssl=tls_context(settings))
    return aiohttp.ClientSession(connector=connector, timeout=timeout or aiohttp.ClientTimeout(total=300))


@dataclass(frozen=True)
class Response:
    """A 2xx/3xx answer as it came: what the list verifier needs (status, headers, exact body bytes;
    ``b""`` when a 200 body was written to the caller's file instead)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


AnswerCheck = Callable[[str, str, str, "Response"], str | None]
"""(method, path, nonce sent, answer) -> None when the answer may be used, else why not (one line)."""


class BackendClient:
    """One backend's HTTP API. ``base_url`` has no trailing slash; other URLs (a key server) are absolute.

    Every JSON answer the device acts on is requested with a fresh nonce (``agent.protocol.answers``) and
    handed to ``check_answer`` before it is parsed; a refused answer raises ``AnswerRejected`` and is never
    returned, so the caller cannot act on it. ``one_off_session`` opens the session of one EBID submission
    (``open_session`` with the same settings: the same pinned CA, so the same TLS rules as the main one)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        check_answer: AnswerCheck,
        one_off_session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self._session = session
        self.base_url = base_url
        self._check = check_answer
        self._one_off_session = one_off_session

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: object = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        raw: bytes | None = None,
        sink: BinaryIO | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> Response:
        """``raw``: send these exact bytes as the JSON body (a padded submission) instead of ``body``."""
        return await self._request_on(self._session, method, url, body, token, headers, progress, raw, sink, max_bytes)

    async def _request_on(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: object,
        token: str | None,
        headers: Mapping[str, str] | None,
        progress: Progress | None,
        raw: bytes | None,
        sink: BinaryIO | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> Response:
        """One exchange. With ``sink``, a 200 body is written there as it arrives (at most ``max_bytes``,
        checked while reading) rather than kept in memory; any other answer is read as usual."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if raw is not None:
            h["Content-Type"] = "application/json"
        where = urlsplit(url).netloc
        try:
            payload: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
            async with session.request(method, url, headers=h, allow_redirects=False, **payload) as r:
                if sink is not None and r.status == 200:
                    data = await _spool(r, sink, max_bytes, progress)
                else:
                    data = await _read(r, progress)
                status, got = r.status, r.headers
        except aiohttp.ClientConnectorCertificateError:
            raise BackendUnavailable(
                f"{where}: TLS certificate not trusted (backend.ca_file names the CA that signed it)"
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendUnavailable(f"{where}: {type(exc).__name__}") from None
        if status in REDIRECTS:
            raise BackendRefused(status, f"{where} redirects; redirects are never followed (set the final URL)")
        if status >= 500 or status == 429:
            retry = got.get("Retry-After", "")
            after = float(retry) if retry.isascii() and retry.isdigit() and len(retry) < 9 else None
            raise BackendUnavailable(f"{where}: HTTP {status} {_message(data)}".rstrip(), after)
        if status >= 400:
            raise BackendRefused(status, _message(data) or "refused")
        return Response(status, got, data)

    async def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[object], _T],
        body: object = None,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> _T:
        """One JSON exchange on the shared session (``_call_on`` says what is checked)."""
        return await self._call_on(self._session, method, path, parse, body, token, raw)

    async def _call_on(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        parse: Callable[[object], _T],
        body: object = None,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> _T:
        """One JSON exchange with our backend on ``session``: signed for this request, then parsed into its
        wire type."""
        nonce = answers.new_nonce()
        answer = await self._request_on(
            session, method, self.base_url + path, body, token, {answers.NONCE_HEADER: nonce}, None, raw
        )
        refused = self._check(method, path, nonce, answer)
        if refused is not None:
            raise AnswerRejected(f"{path.split('?', 1)[0]}: answer refused: {refused}")
        try:
            return parse(json.loads(answer.body))
        except wire.WireError as exc:
            raise SyncError(f"{path}: unexpected answer ({exc})") from None
        except (ValueError, RecursionError):
            raise SyncError(f"{path}: the backend answered something that is not JSON") from None

    # ---- lists ---------------------------------------------------------------------------------------

    async def exposed(
        self, scheme: SchemeName, last_tag: int | None, sink: BinaryIO, max_bytes: int, progress: Progress | None = None
    ) -> Response:
        """The list released after ``last_tag`` (all of it when None), unverified, written to ``sink``."""
        url = f"{self.base_url}/v2/{scheme.value}/exposed"
        if last_tag is not None:
            url += f"?lastKeyBundleTag={last_tag}"
        return await self.request("GET", url, progress=progress, sink=sink, max_bytes=max_bytes)

    async def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        sink: BinaryIO | None = None,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> Response:
        """Any URL (a key server's index, or an export file written to ``sink``)."""
        return await self.request("GET", url, headers=headers, progress=progress, sink=sink, max_bytes=max_bytes)

    # ---- reports -------------------------------------------------------------------------------------

    async def health(self) -> wire.Health:
        return await self._call("GET", "/v1/health", wire.parse_health)

    async def upload_token(self, tan: str | None) -> wire.UploadToken:
        """``tan`` None: a dummy exchange, whose token uploads nothing."""
        return await self._call("POST", "/v1/onset", wire.parse_upload_token, raw=wire.tan_bytes(tan))

    async def check_tan(self, tan: str | None) -> wire.TanGrant:
        """What the officer set on ``tan``, which stays unspent; ``tan`` None: a dummy check."""
        return await self._call("POST", wire.TAN_CHECK_PATH, wire.parse_tan_check, raw=wire.tan_bytes(tan))

    async def upload_keys(self, scheme: SchemeName, body: dict[str, Any], token: str) -> None:
        await self.request("POST", f"{self.base_url}/v2/{scheme.value}/exposed", body=body, token=token)

    async def submission_keys(self) -> wire.SubmissionKeys:
        return await self._call("GET", "/v1/ebid/submission-key", wire.parse_submission_keys)

    async def submission_tokens(
        self, tan: str | None, blinded: list[bytes], modulus_len: int, report_type: ReportType
    ) -> wire.TokenGrant:
        """Blind signatures for ``blinded`` (blinded under ``report_type``'s key), bought with ``tan`` (None:
        a fake request, dummy traffic), and what the TAN carried."""
        return await self._call(
            "POST",
            "/v1/ebid/submission-tokens",
            lambda b: wire.parse_blind_signatures(b, len(blinded), modulus_len),
            raw=wire.token_request_batch_bytes(tan, blinded, report_type),
        )

    async def submit(self, submission: bytes) -> None:
        """One padded submission on a connection of its own, opened for it and closed after it: never a
        pooled one that carried the TAN, an authenticated poll or another submission the backend could
        tie it to. Its receipt is signed and bound to it like every answer (a forged "accepted" would let
        the device drop a contact the backend never filed)."""
        async with self._one_off_session() as one_off:
            path = "/v1/ebid/submissions"
            await self._call_on(one_off, "POST", path, wire.parse_submission_receipt, raw=submission)

    # ---- EBID accounts -------------------------------------------------------------------------------

    async def challenge(self) -> wire.Challenge:
        return await self._call("POST", "/v1/ebid/challenge", wire.parse_challenge)

    async def reregistration_key(self) -> wire.SubmissionKey:
        return await self._call("GET", "/v1/ebid/reregistration-key", wire.parse_submission_key)

    async def register(self, registration: wire.Registration) -> wire.ClientCredentials:
        return await self._call(
            "POST", "/v1/ebid/register", wire.parse_credentials, wire.registration_body(registration)
        )

    async def access_token(self, client_id: str, client_secret: str) -> wire.AccessToken:
        body = wire.token_request_body(client_id, client_secret)
        return await self._call("POST", "/v1/ebid/token", wire.parse_access_token, body)

    async def ebids(self, token: str, periods: int | None = None) -> ebid.EbidBatch:
        query = "" if periods is None else f"?periods={periods}"
        return await self._call("GET", f"/v1/ebid/ebids{query}", wire.parse_ebid_batch, token=token)

    async def risk_verdict(self, token: str) -> wire.RiskVerdict:
        return await self._call("POST", "/v1/ebid/status", wire.parse_risk_verdict, token=token)


async def _read(response: aiohttp.ClientResponse, progress: Progress | None) -> bytes:
    total = response.content_length
    if total is not None and total > MAX_DOWNLOAD_BYTES:
        raise ListRejected(f"download of {total} bytes exceeds the {MAX_DOWNLOAD_BYTES}-byte limit")
    chunks: list[bytes] = []
    done = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        done += len(chunk)
        if done > MAX_DOWNLOAD_BYTES:
            raise ListRejected(f"download exceeds the {MAX_DOWNLOAD_BYTES}-byte limit")
        chunks.append(chunk)
        if progress is not None:
            progress(done, total)
    return b"".join(chunks)


async def _spool(response: aiohttp.ClientResponse, sink: BinaryIO, limit: int, progress: Progress | None) -> bytes:
    """Writes the body to ``sink`` as it arrives, refusing it as soon as it passes ``limit``; b"" back."""
    total = response.content_length
    if total is not None and total > limit:
        raise ListRejected(f"download of {total} bytes exceeds the {limit}-byte limit")
    done = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        done += len(chunk)
        if done > limit:
            raise ListRejected(f"download exceeds the {limit}-byte limit")
        try:
            sink.write(chunk)
        except OSError as exc:
            raise SyncError(f"cannot keep the download on disk: {exc.strerror or type(exc).__name__}") from None
        if progress is not None:
            progress(done, total)
    try:
        sink.flush()
    except OSError as exc:
        raise SyncError(f"cannot keep the download on disk: {exc.strerror or type(exc).__name__}") from None
    return b""


def _message(data: bytes) -> str:
    """The backend's ``{"error": …}`` text, or a short excerpt."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return data[:120].decode("utf-8", "replace").strip()
    return str(obj.get("error", "")) if isinstance(obj, dict) else ""
