"""The agent's side of the backend: pull and verify lists, report, register, fetch EBIDs, poll status.

What a device must be able to rely on:
- **Nothing unverified is matched.** A list from our backend is matched only when its ``Signature`` JWS is
  valid for our backend's key, covers exactly the body, carries the bundle tag of the response, has not
  expired, and the tag does not go backwards (an old list replayed as new is refused); and when the
  export inside is signed by the same key. A plain GAEN key server's files need its own key.
- **Nothing is lost.** The bundle tag advances only after the list's results are stored (with the list's
  digest, atomically, by ``agent.exposure``); a backend that is down is retried with exponential backoff
  and the next success asks for everything since the last tag, so keys released meanwhile arrive late
  but do arrive.
- **Reports are minimal and consented.** The caller shows what ``report_keys``/``ebid_contacts`` return
  before ``report``/``report_ebid`` sends it; after a DP-3T report the key chain starts afresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDictProxy

from agent import signing_keys
from agent.backoff import backoff_delay
from agent.clock import DAY, Clock, day_of
from agent.config import AgentConfig, ConfigError
from agent.exposure import ListOutcome, process_list
from agent.keys import KeyRing
from agent.protocol import export, jws, proof_of_work, wire
from agent.risk import MAX_ATTENUATION_DB, RiskSettings
from agent.schemes import ebid, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.sightings import SightingWindow
from agent.store import ExposureRecord, Store

log = logging.getLogger(__name__)

CONTAGIOUS_DAYS_BEFORE_ONSET = 2
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024
EBID_CREDENTIAL = "ebid"
BUNDLE_TAG_HEADER = "x-key-bundle-tag"
_INDEX_ENTRY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*\.zip$")

Progress = Callable[[int, int | None], None]
"""Called as work advances: (done, total or None). Bytes for downloads, tries for the proof of work."""


class SyncError(Exception):
    """Something the caller should show; ``reason`` is one line without keys, IDs or tokens."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendUnavailable(SyncError):
    """Network trouble, a timeout, HTTP 5xx or 429: try again later (``retry_after`` when the server said)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class BackendRefused(SyncError):
    """The backend answered 4xx; ``reason`` is its message."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


class ListRejected(SyncError):
    """A list failed verification; it was not matched and the bundle tag did not move."""


@dataclass(frozen=True)
class KeyServer:
    """A plain GAEN key server: its ``index.txt`` and the key its exports are signed with."""

    index_url: str
    public_key: ec.EllipticCurvePublicKey
    key_id: str


@dataclass(frozen=True)
class SyncSettings:
    base_url: str
    public_key: ec.EllipticCurvePublicKey | None
    key_id: str = "proxitrace"
    interval_seconds: float = 7200.0
    jitter_seconds: float = 600.0
    status_interval_seconds: float = 21_600.0
    first_retry_seconds: float = 60.0
    max_retry_seconds: float = 3600.0
    retention_days: int = 14
    key_server: KeyServer | None = None

    @classmethod
    def from_config(cls, config: AgentConfig) -> SyncSettings:
        """The ``[backend]`` section, checked; ``ConfigError`` names the key at fault."""
        b = config.backend
        if not b.url:
            raise ConfigError("backend.url: not set (the backend's base URL, e.g. https://backend.example)")
        if not re.match(r"^https?://[^/\s]+", b.url):
            raise ConfigError(f"backend.url: expected an http(s) URL, got {b.url!r}")
        public = _public_key(b.public_key, "backend.public_key") if b.public_key else None
        key_server = None
        if b.key_server_index_url:
            if not b.key_server_public_key or not b.key_server_key_id:
                raise ConfigError("backend.key_server_public_key: a key server needs its public key and key id")
            key_server = KeyServer(
                b.key_server_index_url,
                _public_key(b.key_server_public_key, "backend.key_server_public_key"),
                b.key_server_key_id,
            )
        return cls(
            base_url=b.url.rstrip("/"),
            public_key=public,
            key_id=b.key_id,
            interval_seconds=float(b.sync_interval_seconds),
            jitter_seconds=float(b.sync_jitter_seconds),
            status_interval_seconds=float(b.status_interval_seconds),
            retention_days=config.agent.retention_days,
            key_server=key_server,
        )


def _public_key(text: str, key: str) -> ec.EllipticCurvePublicKey:
    try:
        return signing_keys.parse_public_key(text, source=key)
    except signing_keys.SigningKeyError as exc:
        raise ConfigError(exc.reason) from None


@dataclass(frozen=True)
class VerifiedList:
    """A list whose signatures checked out: safe to match."""

    scheme: SchemeName
    source: str
    keys: tuple[PublishedKey, ...]
    digest: str


@dataclass(frozen=True)
class Pull:
    """What one pull from our backend gave: verified lists (none on 204) and the tag to send next time."""

    lists: tuple[VerifiedList, ...]
    tag: int


@dataclass(frozen=True)
class SyncOutcome:
    scheme: SchemeName
    lists: int = 0
    keys: int = 0
    matched_keys: int = 0
    notify: bool = False
    summaries: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusResult:
    at_risk: bool
    explanation: dict[str, Any]
    polls_left_today: int
    must_register_again: bool


@dataclass
class _Token:
    value: str = ""
    expires: float = 0.0


@dataclass
class _Retry:
    failures: int = 0
    rng: random.Random = field(default_factory=random.SystemRandom)


class SyncClient:
    """One backend, one device store. Every method is a single request/response exchange or a short
    sequence of them; ``run``/``run_ebid`` are the daemon's periodic loops around them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: SyncSettings,
        clock: Clock,
        store: Store,
        rng: random.Random | None = None,
    ) -> None:
        self._session = session
        self.settings = settings
        self._clock = clock
        self._store = store
        self._rng = rng or random.SystemRandom()
        self._access = _Token()

    # ---- HTTP ----------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        body: object = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        where = urlsplit(url).netloc
        try:
            async with self._session.request(method, url, json=body, headers=h) as r:
                data = await _read(r, progress)
                status, got = r.status, r.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendUnavailable(f"{where}: {type(exc).__name__}") from None
        if status >= 500 or status == 429:
            retry = got.get("Retry-After")
            after = float(retry) if retry and retry.isdigit() else None
            raise BackendUnavailable(f"{where}: HTTP {status} {_message(data)}".rstrip(), after)
        if status >= 400:
            raise BackendRefused(status, _message(data) or "refused")
        return status, got, data

    async def _json(self, method: str, path: str, body: object = None, token: str | None = None) -> Any:
        _, _, data = await self._request(method, self.settings.base_url + path, body=body, token=token)
        try:
            return json.loads(data)
        except ValueError:
            raise SyncError(f"{path}: the backend answered something that is not JSON") from None

    # ---- lists from our backend ----------------------------------------------------------------------

    def _require_public_key(self) -> ec.EllipticCurvePublicKey:
        if self.settings.public_key is None:
            raise ConfigError("backend.public_key: not set; lists cannot be verified without it")
        return self.settings.public_key

    def last_tag(self, scheme: SchemeName) -> int | None:
        state = self._store.credential(f"sync.{scheme.value}")
        tag = state.get("tag") if state else None
        return tag if isinstance(tag, int) else None

    async def pull(self, scheme: SchemeName, progress: Progress | None = None) -> Pull:
        """Everything released after the last processed tag, verified; raises ``ListRejected`` for a
        response that fails any check (and then nothing of it is used)."""
        public = self._require_public_key()
        last = self.last_tag(scheme)
        url = f"{self.settings.base_url}/v2/{scheme.value}/exposed"
        if last is not None:
            url += f"?lastKeyBundleTag={last}"
        status, headers, body = await self._request("GET", url, progress=progress)
        tag_text = headers.get(BUNDLE_TAG_HEADER, "")
        if not tag_text.isdigit():
            raise ListRejected(f"{scheme} list: no valid {BUNDLE_TAG_HEADER} header")
        tag = int(tag_text)
        signature = headers.get("Signature")
        if not signature:
            raise ListRejected(f"{scheme} list: unsigned response (no Signature header)")
        try:
            claims = jws.verify_response(body, signature, public, now=self._clock.now())
        except jws.SignatureError as exc:
            raise ListRejected(f"{scheme} list: Signature header refused: {exc.reason}") from None
        if claims.get("key-bundle-tag") != tag_text:
            raise ListRejected(f"{scheme} list: the bundle tag is not the one that was signed")
        if claims.get("scheme", scheme.value) != scheme.value:
            raise ListRejected(f"{scheme} list: signed for another scheme")
        if last is not None and (tag < last or (tag == last and status == 200)):
            raise ListRejected(f"{scheme} list: replayed (bundle tag {tag} is not after the last processed {last})")
        if status != 200:
            return Pull((), tag)
        try:
            content = export.verify_export(
                body, {self.settings.key_id: public}, now=self._clock.now(), key_length=wire.KEY_LEN[scheme]
            )
        except export.ExportError as exc:
            raise ListRejected(f"{scheme} list: export refused: {exc.reason}") from None
        source = f"{self.settings.base_url} {scheme.value} {tag}"
        return Pull((VerifiedList(scheme, source, content.keys, hashlib.sha256(body).hexdigest()),), tag)

    def _commit_tag(self, scheme: SchemeName, tag: int) -> None:
        self._store.set_credential(f"sync.{scheme.value}", {"tag": tag}, self._clock.now())

    # ---- a plain GAEN key server ---------------------------------------------------------------------

    async def pull_key_server(
        self, progress: Progress | None = None
    ) -> tuple[list[VerifiedList], list[str], dict[str, Any]]:
        """New export files listed in the key server's ``index.txt``, each verified with its key; the
        problems (a file that fails is skipped now and tried again next time); and the state to commit
        once the lists are processed (the index's ETag only when every file was good)."""
        ks = self.settings.key_server
        if ks is None:
            return [], [], {}
        state = self._store.credential("sync.keyserver") or {}
        seen = set(state.get("files", []))
        headers = {"If-None-Match": state["etag"]} if state.get("etag") else {}
        status, got, body = await self._request("GET", ks.index_url, headers=headers)
        if status == 304:
            return [], [], state
        try:
            names = [line.strip() for line in body.decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise ListRejected("key server index: not text") from None
        if any(not _INDEX_ENTRY.match(n) or ".." in n for n in names):
            raise ListRejected("key server index: an entry is not a relative .zip path")
        root = urljoin(ks.index_url, "..")
        lists, problems, good = [], [], [n for n in names if n in seen]
        for name in names:
            if name in seen:
                continue
            try:
                _, _, data = await self._request("GET", urljoin(root, name), progress=progress)
                content = export.verify_export(data, {ks.key_id: ks.public_key}, now=self._clock.now())
            except (export.ExportError, SyncError) as exc:
                problems.append(f"key server file {name}: {exc.reason}")
                continue
            digest = hashlib.sha256(data).hexdigest()
            lists.append(VerifiedList(SchemeName.GAEN, f"{ks.index_url} {name}", content.keys, digest))
            good.append(name)
        new_state = {"etag": "" if problems else got.get("ETag", ""), "files": sorted(good)}
        return lists, problems, new_state

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
            raise ValueError("EBID devices do not match lists: use status_check")
        pulled = await self.pull(scheme, progress)
        outcomes = [self._process(scheme, v, risk, receiver_correction) for v in pulled.lists]
        self._commit_tag(scheme, pulled.tag)
        problems: list[str] = []
        if scheme is SchemeName.GAEN and self.settings.key_server is not None:
            try:
                lists, trouble, state = await self.pull_key_server(progress)
                outcomes += [self._process(scheme, v, risk, receiver_correction) for v in lists]
                self._store.set_credential("sync.keyserver", state, self._clock.now())
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
        )

    def _process(self, scheme: SchemeName, v: VerifiedList, risk: RiskSettings, correction: float) -> ListOutcome:
        return process_list(
            self._store,
            scheme,
            v.keys,
            v.digest,
            v.source,
            self._clock.now(),
            risk,
            correction,
            self.settings.retention_days,
        )

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

    async def server_info(self) -> dict[str, Any]:
        info = await self._json("GET", "/v1/health")
        if not isinstance(info, dict):
            raise SyncError("/v1/health: unexpected answer")
        return info

    def first_contagious_day(self, onset_day: int | None, now: float) -> int:
        today = day_of(now)
        oldest = today - self.settings.retention_days + 1
        return oldest if onset_day is None else max(oldest, onset_day - CONTAGIOUS_DAYS_BEFORE_ONSET)

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

    async def exchange_tan(self, tan: str) -> str:
        answer = await self._json("POST", "/v1/onset", {"tan": tan})
        return str(answer["token"])

    async def report(self, scheme: SchemeName, tan: str, onset_day: int | None, keys: list[PublishedKey]) -> None:
        """Upload ``keys`` (what the user consented to) with a TAN, padded to the server's fixed count; a
        DP-3T device then starts a fresh key chain so nothing it broadcasts from now on is linkable."""
        info = await self.server_info()
        count = int(info.get("keysPerUpload", 0))
        if len(keys) > count:
            raise SyncError(f"{len(keys)} keys do not fit the backend's upload size ({count})")
        token = await self.exchange_tan(tan)
        body = wire.key_upload_body(scheme, keys, count, onset_day)
        await self._request("POST", f"{self.settings.base_url}/v2/{scheme.value}/exposed", body=body, token=token)
        if scheme is SchemeName.DP3T:
            KeyRing(self._store, scheme, self.settings.retention_days).reset_dp3t(now=self._clock.now())
        log.info("%s report uploaded", scheme.value)

    # ---- EBID: registration, batches, reports, status ------------------------------------------------

    def credentials(self) -> dict[str, Any] | None:
        creds = self._store.credential(EBID_CREDENTIAL)
        if creds and creds.get("backend") == self.settings.base_url:
            return creds
        return None

    async def register(self, enrolment_code: str, progress: Progress | None = None) -> dict[str, Any]:
        """Challenge → proof of work (in a worker thread, with progress) → credentials, kept in the store;
        then the first EBID batch."""
        challenge = await self._json("POST", "/v1/ebid/challenge")
        data = wire.unb64(challenge.get("challenge"), "challenge", 16)
        difficulty = int(challenge.get("difficulty", 0))
        expected = 2**difficulty

        def report_tries(tries: int) -> None:
            if progress is not None:
                progress(tries, expected)

        nonce = await asyncio.get_running_loop().run_in_executor(
            None, proof_of_work.solve, data, difficulty, report_tries
        )
        body = {"challenge": challenge["challenge"], "nonce": nonce, "enrolmentCode": enrolment_code}
        answer = await self._json("POST", "/v1/ebid/register", body)
        creds = {
            "backend": self.settings.base_url,
            "client_id": answer["clientId"],
            "client_secret": answer["clientSecret"],
            "country_code": answer["countryCode"],
            "period_seconds": answer["periodSeconds"],
        }
        self._store.set_credential(EBID_CREDENTIAL, creds, self._clock.now())
        self._access = _Token()
        await self.fetch_ebids()
        log.info("registered with the backend")
        return creds

    async def _access_token(self) -> str:
        if self._access.value and self._access.expires - 30 > self._clock.now():
            return self._access.value
        creds = self.credentials()
        if creds is None:
            raise SyncError("not registered with this backend: run `proxitrace register --code CODE`")
        try:
            answer = await self._json(
                "POST", "/v1/ebid/token", {"clientId": creds["client_id"], "clientSecret": creds["client_secret"]}
            )
        except BackendRefused as exc:
            if exc.status == 401:
                raise SyncError("the backend no longer knows this device: run `proxitrace register` again") from None
            raise
        self._access = _Token(str(answer["accessToken"]), float(answer["expiresAt"]))
        return self._access.value

    async def fetch_ebids(self, periods: int | None = None) -> ebid.EbidBatch:
        query = "" if periods is None else f"?periods={periods}"
        batch = wire.parse_ebid_batch(
            await self._json("GET", f"/v1/ebid/ebids{query}", token=await self._access_token())
        )
        KeyRing(self._store, SchemeName.EBID, self.settings.retention_days).store_ebid_batch(batch)
        return batch

    def ebid_contacts(
        self, onset_day: int | None, now: float, default_tx_power: int, receiver_correction: float
    ) -> list[wire.ReportedContact]:
        """The EBIDs this device heard in the contagious window, with per-scan attenuations: exactly what
        ``report_ebid`` sends (the ECC is sent when the scanner kept it, as metadata of one byte)."""
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
            scans = tuple(_scan(w, default_tx_power, receiver_correction) for w in windows)
            ecc = first.metadata[0] if len(first.metadata) == 1 else None
            contacts.append(
                wire.ReportedContact(
                    ecc, eid, ebid.period_of(first.first_seen, period_seconds), first.first_seen, scans
                )
            )
        return contacts

    async def report_ebid(self, tan: str, contacts: list[wire.ReportedContact]) -> None:
        token = await self.exchange_tan(tan)
        await self._request(
            "POST", f"{self.settings.base_url}/v1/ebid/report", body=wire.contacts_body(contacts), token=token
        )
        log.info("EBID report uploaded")

    async def status_check(self) -> StatusResult:
        """Ask the backend; an at-risk answer is stored as an exposure with its explanation, and the
        credentials and EBIDs are dropped (the backend erased the pseudonym)."""
        answer = await self._json("POST", "/v1/ebid/status", token=await self._access_token())
        result = StatusResult(
            at_risk=bool(answer["atRisk"]),
            explanation=dict(answer.get("explanation") or {}),
            polls_left_today=int(answer.get("pollsLeftToday", 0)),
            must_register_again=bool(answer.get("mustRegisterAgain")),
        )
        if result.at_risk:
            now = self._clock.now()
            days = result.explanation.get("days") or [{"day": day_of(now), "score": 0.0}]
            records = [
                ExposureRecord(
                    int(d["day"]),
                    SchemeName.EBID,
                    bool(d.get("crossed", True)),
                    float(d.get("score", 0.0)),
                    {**{k: v for k, v in result.explanation.items() if k != "days"}, "days": [d]},
                    now,
                )
                for d in days
            ]
            self._store.record_exposures(records)
        if result.must_register_again:
            self._store.delete_credential(EBID_CREDENTIAL)
            self._store.delete_own_keys(SchemeName.EBID)
            self._access = _Token()
        return result

    async def run_ebid(self, on_result: Callable[[StatusResult | SyncError, float], None] | None = None) -> None:
        """Keep at least a day of EBIDs ahead and poll the status every ``status_interval_seconds`` (plus
        jitter); back off after failures. ``on_result(result, seconds to the next attempt)`` after each
        attempt. Runs until cancelled."""
        retry = _Retry()
        ring = KeyRing(self._store, SchemeName.EBID, self.settings.retention_days)
        while True:
            result: StatusResult | SyncError
            try:
                creds = self.credentials()
                period = int((creds or {}).get("period_seconds", ebid.DEFAULT_PERIOD_SECONDS))
                if creds and ring.ebid_periods_left(self._clock.now()) * period < DAY:
                    await self.fetch_ebids()
                result = await self.status_check()
                delay = self.settings.status_interval_seconds + self._rng.uniform(0, self.settings.jitter_seconds)
                retry.failures = 0
            except SyncError as exc:
                log.warning("EBID sync failed: %s", exc.reason)
                result = exc
                delay = self._next_delay(retry, exc)
            if on_result is not None:
                on_result(result, delay)
            await self._clock.sleep(delay)


def _scan(w: SightingWindow, default_tx_power: int, correction: float) -> wire.ScanRecord:
    tx = w.tx_power if w.tx_power is not None else default_tx_power

    def clamp(value: float) -> int:
        return min(MAX_ATTENUATION_DB, max(0, round(value)))

    return wire.ScanRecord(w.first_seen, clamp(tx - (w.rssi_mean + correction)), clamp(tx - (w.rssi_max + correction)))


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


def _message(data: bytes) -> str:
    """The backend's ``{"error": …}`` text, or a short excerpt."""
    try:
        obj = json.loads(data)
    except ValueError:
        return data[:120].decode("utf-8", "replace").strip()
    return str(obj.get("error", "")) if isinstance(obj, dict) else ""
