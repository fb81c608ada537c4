"""The agent's side of the backend: pull, verify and match lists, report, register, fetch EBIDs, ask for
the risk verdict; and the daemon's loops around them.

Control goes one way: this service asks the HTTP client (``client``) for an answer, hands it to the pure
verifier (``verify``), and only then writes the store or the key ring. What a device must rely on:
- **Nothing unverified is matched** (``agent.sync.verify`` says what is checked).
- **Nothing is lost.** The bundle tag advances only after the list's results are stored (with the list's
  digest, atomically, by ``agent.exposure``); a backend that is down is retried with exponential backoff
  and the next success asks for everything since the last tag, so keys released meanwhile arrive late
  but do arrive.
- **Reports are minimal and consented.** The caller shows what ``report_keys``/``ebid_contacts`` return
  before ``report``/``report_ebid`` sends it; after a DP-3T report the key chain starts afresh.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar
from urllib.parse import urljoin

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.backoff import backoff_delay
from agent.clock import DAY, Clock, day_of
from agent.exposure import (
    ExportRun,
    HeardIds,
    ListOutcome,
    StartMethod,
    process_export_off_loop,
    processed_before,
    workers_for,
)
from agent.keys import KeyRing
from agent.protocol import blind_rsa, proof_of_work, wire
from agent.protocol.export import DEFAULT_LIMITS, ExportError
from agent.protocol.fields import b64, unb64
from agent.risk import RiskSettings, attenuation_to_db, first_contagious_day, samples_from_sightings
from agent.schemes import ebid, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey, ReportType
from agent.sightings import SightingWindow
from agent.store import ExposureRecord, Store
from agent.sync import submissions
from agent.sync.client import BackendClient, Progress, Response, open_session
from agent.sync.errors import BackendRefused, BackendUnavailable, ListRejected, NotConfigured, SyncError, Unregistered
from agent.sync.settings import PENDING_REPORT, SyncSettings
from agent.sync.verify import (
    Refusal,
    VerifiedList,
    VerifiedPull,
    index_entries,
    verify_answer,
    verify_key_server_file,
    verify_pull,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SUBMISSION_ATTEMPTS = 5
EBID_CREDENTIAL = "ebid"
EBID_CAPABILITY = "ebid_capability"
"""The current registration's re-registration capability (token, blind signature, the TX power declared):
kept apart from the credentials, which an erasure drops, because it is what registers the device again."""
NOT_REGISTERED = "not registered with this backend: run `proxitrace register --code CODE`"
POW_SECONDS = 600.0
"""How long registration's proof of work may take (real time): difficulty 24 is seconds on a Pi 4, the
most a backend may ask (``proof_of_work.MAX_DIFFICULTY``) is minutes; past this the challenge has expired."""
MATCH_START_METHOD: StartMethod = "forkserver"
"""How matching workers start: the daemon has threads (the default executor), and forking a threaded
process can copy a lock some thread holds; a fork server is a clean single-threaded parent."""


@dataclass(frozen=True)
class SyncOutcome:
    scheme: SchemeName
    lists: int = 0
    keys: int = 0
    matched_keys: int = 0
    notify: bool = False
    summaries: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    match_processes: int = 0
    """The most processes any new list was matched over (1: in the daemon's own; 0: nothing matched)."""


@dataclass
class _Token:
    value: str = ""
    expires: float = 0.0


@dataclass
class _Retry:
    failures: int = 0
    rng: random.Random = field(default_factory=random.SystemRandom)


class SyncService:
    """One backend, one device store. Every method is one exchange with the backend (or a short sequence)
    and what follows from it locally; ``run``/``run_ebid`` are the daemon's periodic loops around them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: SyncSettings,
        clock: Clock,
        store: Store,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._client = BackendClient(
            session, settings.base_url, self._check_answer, functools.partial(open_session, settings)
        )
        self._clock = clock
        self._store = store
        self._rng = rng or random.SystemRandom()
        self._access = _Token()

    # ---- lists from our backend ----------------------------------------------------------------------

    def _require_public_key(self) -> ec.EllipticCurvePublicKey:
        if self.settings.public_key is None:
            raise NotConfigured("backend.public_key: not set; the backend's lists and answers cannot be verified")
        return self.settings.public_key

    def _check_answer(self, method: str, path: str, nonce: str, answer: Response) -> str | None:
        refused = verify_answer(
            method, path, nonce, answer.headers, answer.body, self._require_public_key(), self._clock.now()
        )
        return None if refused is None else refused.reason

    def last_tag(self, scheme: SchemeName) -> int | None:
        state = self._store.credential(f"sync.{scheme.value}")
        tag = state.get("tag") if state else None
        return tag if isinstance(tag, int) else None

    async def pull(self, scheme: SchemeName, body: IO[bytes], progress: Progress | None = None) -> VerifiedPull:
        """Everything released after the last processed tag, written to ``body`` (a spool file) and
        verified there; raises ``ListRejected`` for a response that fails any check (and then nothing of
        it is used)."""
        public = self._require_public_key()
        last = self.last_tag(scheme)
        answer = await self._client.exposed(scheme, last, body, DEFAULT_LIMITS.max_archive_bytes, progress)
        s = self.settings
        known = answer.status == 200 and processed_before(self._store, body)  # export.sig only: cheap
        verdict = await asyncio.to_thread(  # hashing and verifying tens of megabytes: off the event loop
            verify_pull,
            scheme,
            answer.status,
            answer.headers,
            body,
            public,
            s.key_id,
            s.base_url,
            last,
            self._clock.now(),
            lambda _: known,
        )
        if isinstance(verdict, Refusal):
            raise ListRejected(verdict.reason)
        return verdict

    def spool(self) -> IO[bytes]:
        """A nameless 0600 file in the state directory for one list download: a national list is tens of
        megabytes, too much to hold in memory, and gone with the file when it is closed."""
        try:
            return tempfile.TemporaryFile(dir=self._store.path.parent, prefix="list-")
        except OSError as exc:
            raise SyncError(f"cannot keep a download in the state directory: {exc.strerror}") from None

    def _commit_tag(self, scheme: SchemeName, tag: int) -> None:
        self._store.set_credential(f"sync.{scheme.value}", {"tag": tag}, self._clock.now())

    # ---- a plain GAEN key server ---------------------------------------------------------------------

    async def sync_key_server(
        self,
        risk: RiskSettings,
        receiver_correction: float,
        progress: Progress | None = None,
        heard: HeardIds | None = None,
    ) -> tuple[list[ListOutcome], list[str]]:
        """Match the new export files listed in the key server's ``index.txt``, each verified with its key
        and matched as it arrives; the problems (a file that fails is skipped now and tried again next
        time). The index's ETag is kept only when every file was good."""
        ks = self.settings.key_server
        if ks is None:
            return [], []
        state = self._store.credential("sync.keyserver") or {}
        seen = set(state.get("files", []))
        headers = {"If-None-Match": state["etag"]} if state.get("etag") else {}
        index = await self._client.get(ks.index_url, headers=headers)
        if index.status == 304:
            return [], []
        names = index_entries(index.body)
        if isinstance(names, Refusal):
            raise ListRejected(names.reason)
        heard = heard or self._heard(SchemeName.GAEN)
        root = urljoin(ks.index_url, "..")
        outcomes, problems, good = [], [], [n for n in names if n in seen]
        for name in names:
            if name in seen:
                continue
            with self.spool() as body:
                try:
                    await self._client.get(
                        urljoin(root, name), progress=progress, sink=body, max_bytes=DEFAULT_LIMITS.max_archive_bytes
                    )
                except SyncError as exc:
                    problems.append(f"key server file {name}: {exc.reason}")
                    continue
                if processed_before(self._store, body):  # the same file under another name
                    good.append(name)
                    continue
                verified = await asyncio.to_thread(verify_key_server_file, name, body, ks, self._clock.now())
                if isinstance(verified, Refusal):
                    problems.append(verified.reason)
                    continue
                try:
                    outcomes.append(await self._process(SchemeName.GAEN, verified, risk, receiver_correction, heard))
                except ExportError as exc:
                    problems.append(f"key server file {name}: {exc.reason}")
                    continue
            good.append(name)
        new_state = {"etag": "" if problems else index.headers.get("ETag", ""), "files": sorted(good)}
        self._store.set_credential("sync.keyserver", new_state, self._clock.now())
        return outcomes, problems

    # ---- sync = pull, match, record ------------------------------------------------------------------

    async def sync(
        self,
        scheme: SchemeName,
        risk: RiskSettings,
        receiver_correction: float,
        progress: Progress | None = None,
    ) -> SyncOutcome:
        """Pull, verify and match what is new; results are stored with each list's digest before the tag
        moves. Key-server trouble is reported in ``problems`` and does not stop our backend's list."""
        if scheme is SchemeName.EBID:
            raise ValueError("EBID devices do not match lists: use ask_risk_verdict")
        heard = self._heard(scheme)  # read once, when the first list needs it, for every list of this sync
        with self.spool() as body:
            pulled = await self.pull(scheme, body, progress)
            try:
                outcomes = [await self._process(scheme, v, risk, receiver_correction, heard) for v in pulled.lists]
            except ExportError as exc:
                raise ListRejected(f"{scheme} list: export refused: {exc.reason}") from None
        self._commit_tag(scheme, pulled.tag)
        problems: list[str] = []
        if scheme is SchemeName.GAEN and self.settings.key_server is not None:
            try:
                from_key_server, trouble = await self.sync_key_server(risk, receiver_correction, progress, heard)
                outcomes += from_key_server
                problems += trouble
            except SyncError as exc:
                problems.append(exc.reason)
        fresh = [o for o in outcomes if not o.already_processed]
        return SyncOutcome(
            scheme=scheme,
            lists=len(fresh),
            keys=sum(o.keys for o in fresh),
            matched_keys=sum(o.matched_keys for o in fresh),
            notify=any(o.notify for o in fresh),
            summaries=tuple(o.assessment.explain().summary for o in fresh if o.assessment is not None),
            problems=tuple(problems),
            match_processes=max((o.processes for o in fresh), default=0),
        )

    def _heard(self, scheme: SchemeName) -> HeardIds:
        return HeardIds(self._store, scheme, self._clock.now(), self.settings.retention_days)

    async def _process(
        self, scheme: SchemeName, v: VerifiedList, risk: RiskSettings, correction: float, heard: HeardIds
    ) -> ListOutcome:
        """Match one verified list from its file, off the event loop (``process_export_off_loop``);
        ``ExportError`` if a key in it is refused (nothing stored)."""
        run = ExportRun(
            scheme,
            v.source,
            self._clock.now(),
            risk,
            correction,
            self.settings.retention_days,
            workers=workers_for(v.export, self.settings.match_workers),
            start_method=MATCH_START_METHOD,
        )
        return await process_export_off_loop(self._store, v.export, run, heard)

    def _next_delay(self, retry: _Retry, error: SyncError | None) -> float:
        s = self.settings
        if error is None or not isinstance(error, BackendUnavailable):
            retry.failures = 0
            return s.interval_seconds + self._rng.uniform(0, s.jitter_seconds)
        retry.failures += 1
        delay = backoff_delay(retry.failures, s.first_retry_seconds, s.max_retry_seconds)
        delay *= self._rng.uniform(1.0, 1.25)
        return max(delay, error.retry_after or 0.0)

    async def run(
        self,
        scheme: SchemeName,
        risk: RiskSettings,
        receiver_correction: float,
        on_result: Callable[[SyncOutcome | SyncError, float], None] | None = None,
    ) -> None:
        """Sync every interval (plus random jitter, so devices do not all arrive at once); after a failure
        back off exponentially (capped), then catch up. ``on_result(result, seconds to the next attempt)``
        after each attempt. Runs until cancelled."""
        retry = _Retry()
        await self._clock.sleep(self._rng.uniform(0, self.settings.jitter_seconds))
        while True:
            result: SyncOutcome | SyncError
            try:
                result = await self.sync(scheme, risk, receiver_correction)
            except SyncError as exc:
                log.warning("sync failed: %s", exc.reason)
                result = exc
            delay = self._next_delay(retry, result if isinstance(result, SyncError) else None)
            if on_result is not None:
                on_result(result, delay)
            await self._clock.sleep(delay)

    # ---- reports (DP-3T, GAEN) -----------------------------------------------------------------------

    def first_contagious_day(self, onset_day: int | None, now: float) -> int:
        return first_contagious_day(onset_day, day_of(now), self.settings.retention_days)

    def report_keys(self, scheme: SchemeName, onset_day: int | None, now: float) -> list[PublishedKey]:
        """Exactly the keys a report would send: the contagious days' keys up to today, nothing later."""
        ring = KeyRing(self._store, scheme, self.settings.retention_days)
        first, today = self.first_contagious_day(onset_day, now), day_of(now)
        if scheme is SchemeName.GAEN:
            return [
                PublishedKey(t.key, t.rolling_start_interval_number, t.rolling_period)
                for t in ring.teks()
                if first <= t.rolling_start_interval_number // gaen.ROLLING_PERIOD <= today
            ]
        if scheme is SchemeName.DP3T:
            try:
                day, sk = ring.dp3t_report_keys(first)
            except LookupError:
                return []
            return [PublishedKey(sk, day * gaen.ROLLING_PERIOD)] if day <= today else []
        raise ValueError("EBID reports send contacts: use ebid_contacts")

    async def check_tan(self, tan: str) -> wire.TanGrant:
        """What the officer set on the TAN (onset date, report type), which stays unspent: asked before
        consent, so the device shows and sends exactly the contagious window and a declined report leaves
        the TAN usable. A TAN spent already for a report not yet sent answers from what it bought."""
        for kind in ("upload", "submission"):
            pending = self._pending(tan, kind)
            if pending is not None:
                return wire.parse_tan_grant(pending)
        return await self._client.check_tan(tan)

    async def exchange_tan(self, tan: str) -> wire.UploadToken:
        """The TAN for an upload token and what the officer set on it (onset date, report type), once the
        person has agreed to the report (this spends the TAN). A token this TAN bought before for a report
        not yet sent, and still valid, is used again."""
        pending = self._pending(tan, "upload")
        if pending is not None:
            kept = wire.parse_upload_token(pending)
            if kept.expires_at > self._clock.now():
                return kept
        token = await self._client.upload_token(tan)
        answer = {"token": token.token, "expiresAt": token.expires_at, **wire.tan_grant_body(token.grant)}
        self._keep_pending(tan, "upload", answer)
        return token

    def _pending(self, tan: str, kind: str) -> dict[str, Any] | None:
        kept = self._store.credential(PENDING_REPORT)
        if not kept or kept.get("tan") != _tan_id(tan) or kept.get("kind") != kind:
            return None
        answer = kept.get("answer")
        return answer if isinstance(answer, dict) else None

    def _keep_pending(self, tan: str, kind: str, answer: dict[str, Any]) -> None:
        self._store.set_credential(
            PENDING_REPORT, {"tan": _tan_id(tan), "kind": kind, "answer": answer}, self._clock.now()
        )

    async def report(self, scheme: SchemeName, tan: str, onset_day: int | None, keys: list[PublishedKey]) -> None:
        """Check the TAN (as every report does, so dummy reports look the same), exchange it, then
        ``upload`` ``keys``."""
        await self.check_tan(tan)
        await self.upload(scheme, await self.exchange_tan(tan), onset_day, keys)

    async def upload(
        self, scheme: SchemeName, token: wire.UploadToken, onset_day: int | None, keys: list[PublishedKey]
    ) -> None:
        """Upload ``keys`` (what the user consented to) under an exchanged TAN's token, padded to the
        server's fixed count, with the officer's onset day if the TAN carried one (else ``onset_day``); a
        DP-3T device then starts a fresh key chain so nothing it broadcasts from now on is linkable."""
        count = (await self._client.health()).keys_per_upload
        if len(keys) > count:
            raise SyncError(f"{len(keys)} keys do not fit the backend's upload size ({count})")
        onset = reported_onset(token.grant, onset_day)
        await self._client.upload_keys(scheme, wire.key_upload_body(scheme, keys, count, onset), token.token)
        self._store.delete_credential(PENDING_REPORT)
        if scheme is SchemeName.DP3T:
            KeyRing(self._store, scheme, self.settings.retention_days).reset_dp3t(now=self._clock.now())
        log.info("%s report uploaded", scheme.value)

    # ---- EBID: registration, batches, reports, the risk verdict --------------------------------------

    def credentials(self) -> dict[str, Any] | None:
        creds = self._store.credential(EBID_CREDENTIAL)
        if creds and creds.get("backend") == self.settings.base_url:
            return creds
        return None

    def capability(self) -> wire.Capability | None:
        """The stored re-registration capability for this backend, if any."""
        stored = self._store.credential(EBID_CAPABILITY)
        if not stored or stored.get("backend") != self.settings.base_url:
            return None
        return wire.Capability(unb64(stored["token"], "token"), unb64(stored["signature"], "signature"))

    async def register(
        self, enrolment_code: str | None, progress: Progress | None = None, tx_power: int | None = None
    ) -> dict[str, Any]:
        """Challenge → proof of work (in a worker thread, with progress) → credentials, kept in the store;
        then the first EBID batch. ``tx_power`` (this device's calibration) is declared to the backend,
        which scores reports of this device's EBIDs with it: the adverts do not carry it. The registration
        is paid for with ``enrolment_code``, or (None) with the stored capability (``reregister``); either
        way a blinded token goes with it and the backend's blind signature on it is the next capability."""
        capability = None
        if enrolment_code is None:
            capability = self.capability()
            if capability is None:
                raise Unregistered(NOT_REGISTERED)
        challenge = await self._client.challenge()
        nonce = await self._solve(challenge, progress)
        key = (await self._client.reregistration_key()).public_key
        [pending] = submissions.new_tokens(key, 1)
        request = wire.Registration(
            challenge.challenge, nonce, enrolment_code, tx_power, capability, pending.blinded.blinded_msg
        )
        try:
            answer = await self._client.register(request)
        except BackendRefused as exc:
            if capability is not None and exc.status == 403 and "capability" in exc.reason:
                self._store.delete_credential(EBID_CAPABILITY)  # refused for good: it can never pay again
                why = f"the backend refused the re-registration capability ({exc.reason}); {NOT_REGISTERED}"
                raise Unregistered(why) from None
            raise
        creds = {
            "backend": self.settings.base_url,
            "client_id": answer.client_id,
            "client_secret": answer.client_secret,
            "country_code": answer.country_code,
            "period_seconds": answer.period_seconds,
            "seen_day": day_of(self._clock.now()),
        }
        self._store.set_credential(EBID_CREDENTIAL, creds, self._clock.now())
        self._keep_capability(key, pending, answer.capability_signature, tx_power)
        self._access = _Token()
        await self.fetch_ebids()
        log.info("registered with the backend%s", "" if capability is None else " again, with its capability")
        return creds

    async def reregister(self) -> dict[str, Any]:
        """Register again with the stored capability (no person, no enrolment code), declaring the TX power
        declared before; ``Unregistered`` when there is none or the backend refused it."""
        stored = self._store.credential(EBID_CAPABILITY) or {}
        tx_power = stored.get("tx_power")
        return await self.register(None, tx_power=tx_power if isinstance(tx_power, int) else None)

    def _keep_capability(
        self, key: rsa.RSAPublicKey, pending: submissions.PendingToken, signature: bytes | None, tx_power: int | None
    ) -> None:
        """The new capability replaces the spent one; a backend that signed none (or wrongly) leaves none."""
        self._store.delete_credential(EBID_CAPABILITY)
        if signature is None:
            return
        try:
            final = blind_rsa.finalize(key, pending.prepared, signature, pending.blinded.inv)
        except blind_rsa.BlindSignatureError as exc:
            log.warning("registered, but the backend's capability signature is wrong (%s): no re-registration", exc)
            return
        body = {"backend": self.settings.base_url, "token": b64(pending.prepared), "signature": b64(final)}
        self._store.set_credential(EBID_CAPABILITY, {**body, "tx_power": tx_power}, self._clock.now())

    async def _solve(self, challenge: wire.Challenge, progress: Progress | None) -> int:
        expected = 2**challenge.difficulty

        def report_tries(tries: int) -> None:
            if progress is not None:
                progress(tries, expected)

        deadline = time.monotonic() + POW_SECONDS
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, proof_of_work.solve, challenge.challenge, challenge.difficulty, report_tries, 0, deadline
            )
        except proof_of_work.ProofOfWorkTimeout:
            raise SyncError(
                f"registration: proof of work (difficulty {challenge.difficulty}) not done in {POW_SECONDS:.0f} s"
            ) from None

    async def _access_token(self) -> str:
        if self._access.value and self._access.expires - 30 > self._clock.now():
            return self._access.value
        creds = self.credentials()
        if creds is None:
            raise Unregistered(NOT_REGISTERED)
        try:
            answer = await self._client.access_token(creds["client_id"], creds["client_secret"])
        except BackendRefused as exc:
            if exc.status == 401:
                raise Unregistered("the backend no longer knows this device: run `proxitrace register` again") from None
            raise
        self._access = _Token(answer.token, answer.expires_at)
        today = day_of(self._clock.now())
        if creds.get("seen_day") != today:
            self._store.set_credential(EBID_CREDENTIAL, {**creds, "seen_day": today}, self._clock.now())
        return self._access.value

    def _silent_past_retention(self) -> bool:
        """Whether this device has not reached the backend for longer than retention: the backend then
        purges its registration (``Backend.maintain``), so "unknown client" is the expected answer. A 401 is
        not signed (only successful answers are), so without that silence it may be forged or a backend
        fault, and the credentials are kept rather than replaced (a capability spent on a forgery would
        leave the old pseudonym live beside the new one)."""
        seen = (self.credentials() or {}).get("seen_day")
        return isinstance(seen, int) and day_of(self._clock.now()) - seen > self.settings.retention_days

    async def _authorised(self, call: Callable[[str], Awaitable[_T]]) -> _T:
        """``call(access token)``; a token the backend refuses (it went with a purged or erased pseudonym)
        is dropped and a fresh one asked for once, which then says whether the pseudonym is still known."""
        try:
            return await call(await self._access_token())
        except BackendRefused as exc:
            if exc.status != 401 or not self._access.value:
                raise
        self._access = _Token()
        return await call(await self._access_token())

    async def fetch_ebids(self, periods: int | None = None) -> ebid.EbidBatch:
        batch = await self._authorised(lambda token: self._client.ebids(token, periods))
        KeyRing(self._store, SchemeName.EBID, self.settings.retention_days).store_ebid_batch(batch)
        return batch

    def ebid_contacts(
        self, onset_day: int | None, now: float, receiver_correction: float
    ) -> list[wire.ReportedContact]:
        """The EBIDs this device heard in the contagious window, with per-scan attenuations: exactly what
        ``report_ebid`` sends (the ECC is sent when the scanner kept it, as metadata of one byte). The
        attenuation is the device's own risk rule (``agent.risk``); a sender's TX power, which EBID adverts
        do not carry, is taken as ``wire.EBID_REFERENCE_TX_POWER`` and flagged assumed, for the backend to
        correct with the power the sender declared."""
        creds = self.credentials() or {}
        period_seconds = int(creds.get("period_seconds", ebid.DEFAULT_PERIOD_SECONDS))
        since = self.first_contagious_day(onset_day, now) * DAY
        by_id: dict[bytes, list[SightingWindow]] = defaultdict(list)
        for w in self._store.windows(scheme=SchemeName.EBID, since=since):
            by_id[w.ephemeral_id].append(w)
        contacts = []
        for eid, windows in by_id.items():
            windows.sort(key=lambda w: w.first_seen)
            first = windows[0]
            scans = scan_records(windows, wire.EBID_REFERENCE_TX_POWER, receiver_correction)
            ecc = first.metadata[0] if len(first.metadata) == 1 else None
            period = ebid.period_of(first.first_seen, period_seconds)
            contacts.append(wire.ReportedContact(ecc, eid, period, first.first_seen, scans))
        return contacts

    async def report_ebid(self, tan: str, contacts: list[wire.ReportedContact]) -> None:
        """Check the TAN, buy blind-signed tokens for ``contacts`` with it, then ``submit`` them."""
        grant = await self.check_tan(tan)
        await self.submit(contacts, await self.buy_submission_tokens(tan, len(contacts), grant.report_type))

    async def buy_submission_tokens(self, tan: str, contacts: int, report_type: ReportType) -> submissions.BoughtTokens:
        """Enough blind-signed tokens for ``contacts`` (rounded up to a batch) with the TAN, and what the
        officer set on it, once the person has agreed (this spends the TAN). ``report_type`` is the TAN's,
        from ``check_tan``: the tokens are blinded under that type's key, the one the backend signs this
        TAN's with, so each contact reaches scoring as that type. Tokens this TAN bought before for a
        report not yet sent are used again when there are enough."""
        pending = self._pending(tan, "submission")
        if pending is not None:
            kept = _bought_tokens(pending)
            if len(kept.tokens) >= contacts:
                return kept
        key = (await self._client.submission_keys()).key(report_type)
        pending = submissions.new_tokens(key, submissions.token_count(contacts))
        answer = await self._client.submission_tokens(
            tan, [p.blinded.blinded_msg for p in pending], blind_rsa.modulus_len(key), report_type
        )
        try:
            tokens = submissions.finalize_tokens(key, pending, answer.blind_signatures)
        except blind_rsa.BlindSignatureError as exc:
            raise SyncError(f"/v1/ebid/submission-tokens: the backend's blind signature is wrong ({exc})") from None
        bought = submissions.BoughtTokens(tuple(tokens), answer.grant)
        self._keep_pending(tan, "submission", _bought_body(bought))
        return bought

    async def submit(self, contacts: list[wire.ReportedContact], bought: submissions.BoughtTokens) -> None:
        """Each contact as a separate submission under one bought token, the rest of the tokens spent on
        padding (``agent.sync.submissions`` says why each step), over ``submission_spread_seconds``."""
        if len(contacts) > len(bought.tokens):
            raise SyncError(f"{len(contacts)} contacts, but only {len(bought.tokens)} submission tokens were bought")
        planned = submissions.plan(contacts, bought.tokens, self.settings.submission_spread_seconds, self._rng)
        await self._send_at(planned)
        self._store.delete_credential(PENDING_REPORT)
        log.info("EBID report sent as %d separate submissions", len(planned))

    async def fake_report(self, scheme: SchemeName) -> None:
        """Dummy traffic (DP-3T's design): a report in every way a real one looks on the wire (the same
        requests, the same padded sizes, the same spread of submissions) that the backend stores nowhere.

        An EBID dummy always blinds as a confirmed test: the type travels inside the TLS body, every
        report type's key has the same modulus length and the bodies are padded, so a type shows in no
        size, and the backend reads ``"fake"`` in the same body anyway; mimicking the mix of real types
        would hide nothing more."""
        await self._client.check_tan(None)
        if scheme is SchemeName.EBID:
            report_type = ReportType.CONFIRMED_TEST
            key = (await self._client.submission_keys()).key(report_type)
            k = blind_rsa.modulus_len(key)
            pending = submissions.new_tokens(key, wire.SUBMISSION_TOKEN_BATCH)
            await self._client.submission_tokens(None, [p.blinded.blinded_msg for p in pending], k, report_type)
            times = sorted(self._rng.uniform(0.0, self.settings.submission_spread_seconds) for _ in pending)
            await self._send_at([submissions.PlannedSubmission(t, submissions.dummy_submission(k)) for t in times])
        else:
            count = (await self._client.health()).keys_per_upload
            token = (await self._client.upload_token(None)).token
            # a random key of today stands in for the real ones, so the padding keys' days (derived from
            # it) and so the body's length are as a real upload's; under a fake token nothing is stored
            today = gaen.day_start_enin(gaen.enin(self._clock.now()))
            stand_in = PublishedKey(os.urandom(wire.KEY_LEN[scheme]), today)
            await self._client.upload_keys(scheme, wire.key_upload_body(scheme, [stand_in], count, None), token)
        log.debug("dummy %s report sent", scheme.value)

    async def run_dummy_traffic(self, scheme: SchemeName) -> None:
        """Fake reports at exponentially distributed intervals (a memoryless process: the time since the
        last one says nothing about the next, real or fake). Runs until cancelled."""
        while True:
            await self._clock.sleep(self._rng.expovariate(1.0 / self.settings.dummy_mean_interval_seconds))
            try:
                await self.fake_report(scheme)
            except SyncError as exc:
                log.debug("dummy report not sent: %s", exc.reason)

    async def _send_at(self, planned: list[submissions.PlannedSubmission]) -> None:
        """Each submission opens its connection at its planned time, whatever the others are doing: sent one
        after another, a slow answer would push every later one back, so the gaps an observer sees would
        carry the backend's work (a stored contact takes longer than a dropped dummy) instead of the plan."""
        start = self._clock.now()

        async def send(p: submissions.PlannedSubmission) -> None:
            await self._clock.sleep(max(0.0, start + p.at - self._clock.now()))
            await self._submit_retrying(p.body)

        try:
            async with asyncio.TaskGroup() as group:
                for p in planned:
                    group.create_task(send(p))
        except ExceptionGroup as failed:  # the first failure ends the report, as a sequential send would
            raise failed.exceptions[0] from None

    async def _submit_retrying(self, body: bytes) -> None:
        """A submission the backend could not take now is retried (a token is only spent when stored)."""
        for attempt in range(SUBMISSION_ATTEMPTS):
            try:
                await self._client.submit(body)
                return
            except BackendUnavailable as exc:
                if attempt == SUBMISSION_ATTEMPTS - 1:
                    raise
                await self._clock.sleep(exc.retry_after or backoff_delay(attempt, 1.0, 60.0))

    async def ask_risk_verdict(self) -> wire.RiskVerdict:
        """Ask the backend; an at-risk verdict is stored as an exposure with its explanation, and the
        credentials and EBIDs are dropped (the backend erased the pseudonym)."""
        verdict = await self._authorised(self._client.risk_verdict)
        if verdict.at_risk:
            self._store.record_exposures(_exposure_records(verdict, self._clock.now()))
        if verdict.must_register_again:
            self._forget_registration()
        return verdict

    def _forget_registration(self) -> None:
        """The backend erased (or forgot) the pseudonym: its credentials and EBIDs are worthless now; the
        capability stays, it is what registers the device again."""
        self._store.delete_credential(EBID_CREDENTIAL)
        self._store.delete_own_keys(SchemeName.EBID)
        self._access = _Token()

    async def ebid_round(self) -> wire.RiskVerdict:
        """One round of the EBID loop: register again (with the capability, no person) if the pseudonym is
        gone, keep a day of EBIDs ahead, ask for the verdict. A pseudonym the backend forgot (purged while
        this device was silent past retention: the database holds no trace of when) is replaced in the same
        round; one it erased in this
        round's verdict is replaced by the next round, which ``run_ebid`` starts within
        ``reregister_spread_seconds``."""
        if self.credentials() is None:
            await self.reregister()
        purged = self._silent_past_retention()
        try:
            await self._top_up_ebids()
            return await self.ask_risk_verdict()
        except Unregistered:
            if not purged:
                raise
            self._forget_registration()
            await self.reregister()
            return await self.ask_risk_verdict()

    async def _top_up_ebids(self) -> None:
        creds = self.credentials()
        period = int((creds or {}).get("period_seconds", ebid.DEFAULT_PERIOD_SECONDS))
        ring = KeyRing(self._store, SchemeName.EBID, self.settings.retention_days)
        if creds and ring.ebid_periods_left(self._clock.now()) * period < DAY:
            await self.fetch_ebids()

    async def run_ebid(self, on_result: Callable[[wire.RiskVerdict | SyncError, float], None] | None = None) -> None:
        """``ebid_round`` every ``status_interval_seconds`` (plus jitter), or within
        ``reregister_spread_seconds`` after an erasure; back off after failures.
        ``on_result(result, seconds to the next attempt)`` after each attempt. Runs until cancelled."""
        retry = _Retry()
        while True:
            result: wire.RiskVerdict | SyncError
            try:
                result = await self.ebid_round()
                delay = self.settings.status_interval_seconds + self._rng.uniform(0, self.settings.jitter_seconds)
                if result.must_register_again and self.capability() is not None:
                    delay = self._rng.uniform(0, self.settings.reregister_spread_seconds)
                retry.failures = 0
            except SyncError as exc:
                log.warning("EBID sync failed: %s", exc.reason)
                result = exc
                delay = self._next_delay(retry, exc)
            if on_result is not None:
                on_result(result, delay)
            await self._clock.sleep(delay)


def _tan_id(tan: str) -> str:
    """How the device recognises a TAN it redeemed before without keeping it."""
    return hashlib.sha256(tan.strip().upper().encode()).hexdigest()


def _bought_body(bought: submissions.BoughtTokens) -> dict[str, Any]:
    tokens = [[b64(t), b64(s)] for t, s in bought.tokens]
    return {"tokens": tokens, **wire.tan_grant_body(bought.grant)}


def _bought_tokens(body: dict[str, Any]) -> submissions.BoughtTokens:
    pairs = body.get("tokens")
    tokens = tuple((unb64(t, "tokens"), unb64(s, "tokens")) for t, s in pairs) if isinstance(pairs, list) else ()
    return submissions.BoughtTokens(tokens, wire.parse_tan_grant(body))


def reported_onset(grant: wire.TanGrant, onset_day: int | None) -> int | None:
    """The onset a report covers: the officer's (on the TAN) wins over the user's own."""
    return grant.onset_day if grant.onset_day is not None else onset_day


def scan_records(
    windows: list[SightingWindow], default_tx_power: int, correction: float
) -> tuple[wire.ScanRecord, ...]:
    """Per-scan attenuations by the device's own risk rule (``agent.risk.samples_from_sightings``: which TX
    power, the correction, whether the power was assumed; ``attenuation_to_db``: whole dB, half up), so a
    contact reported to the backend is weighed as the device itself would weigh it."""
    samples = samples_from_sightings(windows, receiver_correction=correction, default_tx_power=default_tx_power)
    return tuple(
        wire.ScanRecord(
            w.first_seen,
            attenuation_to_db(s.typical_attenuation),
            attenuation_to_db(s.min_attenuation),
            s.assumed_tx_power,
        )
        for w, s in zip(windows, samples, strict=True)
    )


def _exposure_records(verdict: wire.RiskVerdict, now: float) -> list[ExposureRecord]:
    """One record per day the backend's explanation names (today when it names none)."""
    days = verdict.explanation.get("days") or [{"day": day_of(now), "score": 0.0}]
    rest = {k: v for k, v in verdict.explanation.items() if k != "days"}
    return [
        ExposureRecord(
            int(d["day"]),
            SchemeName.EBID,
            bool(d.get("crossed", True)),
            float(d.get("score", 0.0)),
            {**rest, "days": [d]},
            now,
        )
        for d in days
    ]
