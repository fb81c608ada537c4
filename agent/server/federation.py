"""Federation: reports holding another country's EBIDs go to that country's backend.

A backend can tell whose EBID it holds (the ECC decodes with the shared K_G) but cannot read a foreign
EBID (it lacks that backend's BK_t), so it forwards those contacts over an authenticated backend-to-backend
request. Forwards wait in the store's outbox and are retried with backoff, so a peer that is down loses
nothing; each carries a random message id, and a peer stores a message once however often it arrives.
Workers sharing one outbox deliver it one at a time (``run``), so a forward is normally sent once.

Authentication: both backends of a pair configure the same secret; a request carries its origin country,
a timestamp and HMAC-SHA256(secret, origin ‖ time ‖ method ‖ path ‖ SHA-256(body)). A request older than
the allowed clock skew, or from a country with no configured peer, is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping, Sequence

import aiohttp

from agent.aio import first
from agent.backoff import backoff_delay
from agent.clock import Clock
from agent.protocol import wire
from agent.protocol.fields import WireError, integer, obj_of
from agent.schemes.published import ReportType
from agent.server.config import BackendConfig, PeerSection
from agent.server.db import ServerStore
from agent.server.errors import ApiError

log = logging.getLogger(__name__)
FORWARD_PATH = "/v1/federation/report"
ORIGIN_HEADER = "X-Proxitrace-Origin"
TIME_HEADER = "X-Proxitrace-Time"
MAC_HEADER = "X-Proxitrace-Mac"
MAX_RETRY_SECONDS = 3600.0
_REFUSED_FOR_GOOD = {400, 413}
DELIVERY_LOCK = 0x70726F78_66656472  # the advisory lock of the one worker delivering the outbox
BUSY_RETRY_SECONDS = 2.0  # another worker is delivering: look again this soon, for forwards queued here meanwhile


def mac(secret: str, origin: int, timestamp: int, method: str, path: str, body: bytes) -> str:
    message = f"{origin}\n{timestamp}\n{method.upper()}\n{path}\n".encode() + hashlib.sha256(body).digest()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, origin: int, now: float, method: str, path: str, body: bytes) -> dict[str, str]:
    t = int(now)
    return {
        ORIGIN_HEADER: str(origin),
        TIME_HEADER: str(t),
        MAC_HEADER: mac(secret, origin, t, method, path, body),
        "Content-Type": "application/json",
    }


def forward_body(contacts: Sequence[wire.ReportedContact], report_type: ReportType) -> bytes:
    """A forward carries its submission's report type (the key its token verified under), so the peer
    scores the contacts as this backend would."""
    body = {"id": secrets.token_hex(16), "reportType": int(report_type), **wire.contacts_body(contacts)}
    return json.dumps(body).encode()


def forwarded_report_type(body: object) -> ReportType:
    """A forward's report type; a peer that sends none (older) forwards confirmed tests, as it scored them."""
    value = integer(obj_of(body, "body"), "reportType", "body", 0, 7, default=int(ReportType.CONFIRMED_TEST))
    if value not in wire.REPORT_TYPES:
        raise WireError(f"body.reportType: {value} is not a diagnosis report type")
    return ReportType(value)


class Federation:
    def __init__(self, config: BackendConfig, clock: Clock, store: ServerStore) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._peers = {p.country_code: p for p in config.federation.peers}
        self._wake = asyncio.Event()

    def peer(self, country_code: int) -> PeerSection | None:
        return self._peers.get(country_code)

    def authenticate(self, headers: Mapping[str, str], method: str, path: str, body: bytes) -> int:
        """The origin country of a correctly signed, fresh request from a configured peer, else 401."""
        try:
            origin = int(headers.get(ORIGIN_HEADER, ""))
            t = int(headers.get(TIME_HEADER, ""))
        except ValueError:
            raise ApiError(401, "federation request without valid origin and time headers") from None
        peer = self._peers.get(origin)
        if peer is None:
            raise ApiError(401, f"no federation peer for country code {origin}")
        if abs(self._clock.now() - t) > self._config.federation.max_clock_skew_seconds:
            raise ApiError(401, "federation request too old or from the future (check the clocks)")
        expected = mac(peer.secret, origin, t, method, path, body)
        if not hmac.compare_digest(expected, headers.get(MAC_HEADER, "")):
            raise ApiError(401, "federation request with a wrong MAC")
        return origin

    def wake(self) -> None:
        """A forward was queued: send it now rather than at the next retry time."""
        self._wake.set()

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Deliver the outbox until cancelled, one worker at a time: a pass runs under a try-lock on the
        database, so workers sharing one outbox never send a forward twice (each would read the same due
        rows). A worker that finds the lock taken looks again soon, for the forwards it queued itself;
        one that dies mid-pass drops its PostgreSQL session, and with it the lock, and the forwards it did
        not mark done are sent again by the next holder (the peer stores a message id once)."""
        while True:
            self._wake.clear()
            ran = True  # a pass that failed is retried on the usual schedule, not as soon as the lock is free
            try:
                ran = await self.deliver_if_free(session)
            except Exception:  # a store hiccup must not end delivery for good; the outbox keeps the work
                log.exception("federation delivery failed")
            next_at = await asyncio.to_thread(self._store.next_forward_time)
            delay = 3600.0 if next_at is None else max(0.0, next_at - self._clock.now())
            if not ran:
                delay = min(delay, BUSY_RETRY_SECONDS)
            await first(wake=self._wake.wait(), due=self._clock.sleep(delay))

    async def deliver_if_free(self, session: aiohttp.ClientSession) -> bool:
        """One pass over the due forwards unless another worker holds the delivery lock; whether it ran."""
        held = await asyncio.to_thread(self._store.database.try_advisory_lock, DELIVERY_LOCK)
        if held is None:
            return False
        try:
            await self.deliver_due(session)
        finally:
            await asyncio.to_thread(held.release)
        return True

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """One pass over the due forwards; the number delivered."""
        delivered = 0
        for item in await asyncio.to_thread(self._store.due_forwards, self._clock.now()):
            peer = self._peers.get(item.country_code)
            if peer is None:  # the peer left the config: nobody can take these contacts
                log.warning("dropping a forward for country %d: no such peer configured", item.country_code)
                await asyncio.to_thread(self._store.forward_done, item.id)
                continue
            status = await self._send(session, peer, item.body)
            if status is not None and 200 <= status < 300:
                await asyncio.to_thread(self._store.forward_done, item.id)
                delivered += 1
            elif status in _REFUSED_FOR_GOOD:
                log.warning("peer %d refused a forward for good (HTTP %d); dropped", peer.country_code, status)
                await asyncio.to_thread(self._store.forward_done, item.id)
            else:
                delay = backoff_delay(item.attempts + 1, self._config.federation.retry_seconds, MAX_RETRY_SECONDS)
                await asyncio.to_thread(self._store.forward_retry, item.id, self._clock.now() + delay)
                log.info("forward to country %d failed (%s); retry in %.0f s", peer.country_code, status, delay)
        return delivered

    async def _send(self, session: aiohttp.ClientSession, peer: PeerSection, body: bytes) -> int | None:
        url = peer.url.rstrip("/") + FORWARD_PATH
        headers = signed_headers(
            peer.secret, self._config.server.country_code, self._clock.now(), "POST", FORWARD_PATH, body
        )
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("forward to %s: %s", url, exc)
            return None
