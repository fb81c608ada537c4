"""The backend on PostgreSQL with 1 and 2 workers (`proxitrace backend serve --workers N`) at a national
rate: 1 M registered EBID devices, a day's traffic mix offered at the national rate and at multiples of it,
per endpoint requests/s, p50/p99 latency and errors, each endpoint's closed-loop capacity as a ratio to the
same run's health GET, the highest multiple sustained, and the time to publish one 600 k-key list file.

Run: PYTHONPATH=. python tests/bench/bench_backend_workers.py            # the full run (1 M devices)
     PYTHONPATH=. python tests/bench/bench_backend_workers.py --quick    # small numbers, under 2 minutes

Bounded and local: a throwaway PostgreSQL cluster (``tests/support/postgres.py``, Debian's postgresql 15)
on a unix socket, the backend on 127.0.0.1, one database for both worker counts (the second run sees the
rows the first one wrote, as a backend that restarts with more workers would).

The population is written in bulk (one transaction of ``COPY``, rows exactly as ``EbidTables.register``
and ``add_access_token`` store them: a random 62-bit id, a 16-byte client id in base64url, the SHA-256 of a
32-byte secret, a 16-byte PUID, the declared TX power, today's ``seen_day``, the default poll counters),
each device's secrets derived from a seed and its index so the client can act as any device without
holding a million of them. A few devices register through the real path (enrolment code, challenge,
proof of work, ``/v1/ebid/register``); their rows are checked to have the bulk rows' shape, and every
status poll of the mix goes to a bulk-loaded device and must answer 200, which proves the rows equivalent.

The day's mix (``traffic_mix``) states each flow's daily count and why. Arrivals are Poisson and the
client sends each at its time whether or not earlier ones were answered (an open loop, as a million
independent devices are); latency counts from the planned time, so a client that falls behind shows as
latency, not as a lower offered rate. All requests go over pooled connections, as nginx's upstream
``keepalive`` (``systemd/nginx-proxitrace.conf``) carries them to the backend; response-time padding is
off (a fixed floor per request, not a cost). The client runs on the same cores as the workers, so the
ratios, not the absolutes, are the figures; with 2 cores and the client on them a second worker gains
less than it would on a server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/support, as the test suite has it

from _backend_setup import latency_figures, timed
from support.postgres import database_for, throwaway_cluster

from agent.clock import DAY, ManualClock, day_of
from agent.protocol import blind_rsa, proof_of_work, wire
from agent.schemes import ebid, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey, ReportType
from agent.server import buckets, codes
from agent.server.config import backend_config_from_dict
from agent.server.db import ServerStore
from agent.server.ebid import issue_enrolment_codes
from agent.server.lists import Lists
from agent.server.signing import KeySigner
from agent.server.uploads import issue_tans
from agent.signing_keys import generate_signing_key
from agent.sync import submissions
from agent.sync.settings import SyncSettings

NATIONAL_DEVICES = 1_000_000
DK_UPLOADS_PER_DAY = 100_000  # the issue's national figure (diagnosis-key uploads a day, GAEN side)
POSITIVE_RATE = 0.003
"""EBID devices reporting a positive test a day: the share of its users that 100 k uploads a day is of a
~30 M-user national GAEN app (Corona-Warn-App's scale at its peak)."""
CONTACTS_PER_REPORT = 8  # contacts a report carries (the other tokens of its batch go as padding)
RETENTION_DAYS = 14  # exposures and broadcast keys held: the lists' and exposures' retention
KEYS_PER_DK_UPLOAD = 14  # one key a day over the 14-day window
FAR_ATTENUATION = 75  # dB: loaded and reported contacts score as not at risk, so no poll erases a device
P99_BOUND_MS = 500.0
"""A mix is sustained when every endpoint's p99 stays under this, nothing fails and the offered rate was
reached: far inside the agent's request timeouts, and what a service sized for its peak would promise."""
STATUS_POLLS_PER_DAY = DAY / SyncSettings.status_interval_seconds  # the agent's default status interval
COPY_ROWS = 50_000  # rows per generated chunk while loading
SAMPLE_REGISTRATIONS = 4
POW_DIFFICULTY = 12  # the sample's proof of work: the server checks one hash whatever the difficulty


@dataclass(frozen=True)
class Flow:
    """One kind of device behaviour: how many a day nationally, and why."""

    name: str
    per_day: float
    why: str


def traffic_mix(devices: int, dummy_traffic: bool) -> list[Flow]:
    """The day's flows for ``devices`` registered EBID devices and the national GAEN uploads."""
    share = devices / NATIONAL_DEVICES
    reports = POSITIVE_RATE * devices
    flows = [
        Flow(
            "status_poll",
            STATUS_POLLS_PER_DAY * devices,
            f"every EBID device asks its verdict every {SyncSettings.status_interval_seconds:.0f} s",
        ),
        Flow("access_token", devices, "an access token lives to the end of the UTC day: one per device a day"),
        Flow("ebid_batch", devices, "192 periods (2 days) a batch, topped up when under a day is left"),
        Flow(
            "list_pull",
            devices,
            "every device once a day; in reality nginx or a CDN serves the files, the backend only the API",
        ),
        Flow("health_get", DAY, "a monitor's probe once a second (uploads ask it too, counted in their flow)"),
        Flow(
            "dk_upload",
            DK_UPLOADS_PER_DAY * share,
            "TAN check, TAN exchange, health GET, upload of 14 keys padded to the upload size",
        ),
        Flow(
            "ebid_report",
            reports,
            f"{POSITIVE_RATE:.1%} of devices a day: TAN check, submission key, 16 tokens bought with the TAN",
        ),
        Flow(
            "ebid_submission",
            reports * wire.SUBMISSION_TOKEN_BATCH,
            f"each report's 16 separate submissions, {CONTACTS_PER_REPORT} of them contacts",
        ),
    ]
    if dummy_traffic:
        mean = SyncSettings.dummy_mean_interval_seconds
        flows += [
            Flow(
                "ebid_dummy_report",
                devices * DAY / mean,
                f"the agent's dummy traffic: one fake report per {mean:.0f} s",
            ),
            Flow(
                "ebid_dummy_submission",
                devices * DAY / mean * wire.SUBMISSION_TOKEN_BATCH,
                "each fake report's 16 fake submissions",
            ),
        ]
    return flows


# ---- the population ----------------------------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class Device:
    """A bulk-loaded device's secrets, derived from the run's seed and its index."""

    id: int
    client_id: str
    secret: str
    puid: bytes
    access_token: str


def device(seed: bytes, i: int) -> Device:
    d = hashlib.shake_256(seed + i.to_bytes(8, "big")).digest(104)
    return Device(
        int.from_bytes(d[:8], "big") >> 2,  # 62 bits, as secrets.randbits(62)
        b64url(d[8:24]),  # as secrets.token_urlsafe(16)
        b64url(d[24:56]),  # as codes.new_token()
        d[56 : 56 + ebid.PUID_LEN],
        b64url(d[72:104]),
    )


def far_scans(period: int) -> tuple[wire.ScanRecord, ...]:
    start = period * ebid.DEFAULT_PERIOD_SECONDS
    return tuple(wire.ScanRecord(start + 60.0 * s + 1, FAR_ATTENUATION, FAR_ATTENUATION - 5) for s in range(15))


def copy_rows(conn: psycopg.Connection[Any], statement: str, rows: Iterator[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def load_population(url: str, seed: bytes, devices: int, now: float, tx_power: int) -> dict[str, float]:
    """1 M registrations with today's access token, 14 days of broadcast keys and of exposures reported to
    them, in one transaction; the seconds each part took."""
    today = day_of(now)
    expires = codes.rounded_expiry(now + DAY, codes.TOKEN_EXPIRY_BUCKET_SECONDS)  # a day boundary after the run
    period = ebid.period_of(now)
    first_period = period - RETENTION_DAYS * DAY // ebid.DEFAULT_PERIOD_SECONDS
    out: dict[str, float] = {}
    with psycopg.connect(url) as conn:  # one transaction, committed on leaving the block
        t = time.perf_counter()
        copy_rows(
            conn,
            "COPY registrations (id, client_id, secret_hash, puid, tx_power, seen_day) FROM STDIN",
            (
                (d.id, d.client_id, codes.code_hash(d.secret), d.puid, tx_power, today)
                for d in (device(seed, i) for i in range(devices))
            ),
        )
        out["registrations_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        copy_rows(
            conn,
            "COPY access_tokens (hash, registration_id, expires) FROM STDIN",
            ((codes.code_hash(d.access_token), d.id, expires) for d in (device(seed, i) for i in range(devices))),
        )
        out["access_tokens_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        copy_rows(
            conn,
            "COPY broadcast_keys (period, key) FROM STDIN",
            ((p, os.urandom(ebid.KEY_LEN)) for p in range(first_period, period)),
        )
        rng = random.Random(seed)
        exposures = int(RETENTION_DAYS * POSITIVE_RATE * devices * CONTACTS_PER_REPORT)

        def exposure_rows() -> Iterator[tuple[Any, ...]]:
            taken: set[tuple[int, int]] = set()  # one exposure per device and period: the key is unique
            while len(taken) < exposures:
                pair = (rng.randrange(devices), rng.randrange(first_period, period))
                if pair in taken:
                    continue
                taken.add(pair)
                scans = far_scans(pair[1])
                body = json.dumps(wire.scans_body(scans))
                yield device(seed, pair[0]).id, pair[1], scans[0].time, body, int(ReportType.CONFIRMED_TEST)

        copy_rows(
            conn, "COPY exposures (registration_id, period, time, scans, report_type) FROM STDIN", exposure_rows()
        )
        out["exposures"] = exposures
        out["exposures_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # as autovacuum would after a load, so plans see the real sizes
    out["analyze_seconds"] = time.perf_counter() - t
    return {k: round(v, 1) for k, v in out.items()}


def load_list(url: str, keys: int, tag: int) -> None:
    """``keys`` released GAEN keys in the bucket ending at ``tag``, as uploads stamp them."""
    start_enin = gaen.day_start_enin(gaen.enin(tag / 1000)) - 144
    with psycopg.connect(url) as conn:
        copy_rows(
            conn,
            "COPY published_keys FROM STDIN",
            ((SchemeName.GAEN.value, os.urandom(16), start_enin, 144, 3, 1, None, tag) for _ in range(keys)),
        )


# ---- the backend and the sample registered through the real path -------------------------------------


def backend_toml(tmp: Path, database: str) -> Path:
    config = tmp / "backend.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp / "data"}"\ndatabase = "{database}"\n'
        "[upload]\nmin_response_seconds = 0\n"
        # one client address stands for every device here: its challenge allowance is a device's many times
        f"[ebid]\npow_difficulty = {POW_DIFFICULTY}\nchallenges_per_client_per_hour = 1000\n"
        "[portal]\nenabled = false\n"
    )
    return config


def start_backend(config: Path, workers: int) -> tuple[subprocess.Popen[str], str]:
    command = ["serve", "--config", str(config), "--port", "0", "--workers", str(workers)]
    server = subprocess.Popen([sys.executable, "-m", "agent", "backend", *command], stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    for line in server.stderr:
        if m := re.search(r"listening on (http://\S+)", line):
            # keep reading its log (one line per request), or the pipe fills and the server stops
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, m[1]
    raise RuntimeError("the backend did not start")


def stop_backend(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


async def register_sample(http: aiohttp.ClientSession, url: str, code: str, tx_power: int) -> dict[str, Any]:
    """One device through the real registration path, as the agent registers (with a blinded capability
    token); its credentials."""
    async with http.post(f"{url}/v1/ebid/challenge") as r:
        assert r.status == 200, await r.text()
        challenge = wire.parse_challenge(await r.json())
    nonce = await asyncio.to_thread(proof_of_work.solve, challenge.challenge, challenge.difficulty)
    async with http.get(f"{url}/v1/ebid/reregistration-key") as r:
        key = wire.parse_submission_key(await r.json()).public_key
    [pending] = submissions.new_tokens(key, 1)
    request = wire.Registration(challenge.challenge, nonce, code, tx_power, None, pending.blinded.blinded_msg)
    body = wire.registration_body(request)
    async with http.post(f"{url}/v1/ebid/register", json=body) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


def row_shapes(url: str, where: str, args: tuple[Any, ...]) -> set[tuple[Any, ...]]:
    """What a registration row holds, up to its random values (the poll counters, which a poll changes,
    left out): the lengths of its secrets, its TX power and day, its id within 62 bits."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT length(client_id), length(secret_hash), length(puid), tx_power, seen_day, "
            f"id > 0 AND id < 4611686018427387904 FROM registrations WHERE {where}",
            args,
        ).fetchall()
    return {tuple(r) for r in rows}


# ---- the open-loop mix -------------------------------------------------------------------------------


def as_json(raw: bytes) -> dict[str, Any]:
    """A pre-built (padded) JSON body, sent as these exact bytes as the agent sends it."""
    return {"data": raw, "headers": {"Content-Type": "application/json"}}


class Recorder:
    """Per endpoint: latencies from the planned send time, and failures by kind."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    async def call(self, name: str, planned: float, request: Callable[[], Awaitable[int]]) -> int | None:
        """``request()``, timed from ``planned``; None unless it answered 200 (what every request of the
        mix must answer)."""
        try:
            status = await request()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[name][type(exc).__name__] += 1
            return None
        if status != 200:
            self.errors[name][str(status)] += 1
            return None
        self.latencies[name].append(time.perf_counter() - planned)
        return status


@dataclass
class Resources:
    """What the mix's requests spend, prepared before a run so the client does no crypto during it."""

    tans: list[str]
    real_submissions: list[bytes]
    dummy_purchases: list[bytes]
    dummy_submissions: list[bytes]
    blinded: list[list[bytes]]


class Mix:
    """The client side of the day's flows: each flow's requests as a device sends them."""

    def __init__(self, http: aiohttp.ClientSession, url: str, seed: bytes, devices: int, list_after: int) -> None:
        self.http, self.url, self.seed, self.devices = http, url, seed, devices
        self.list_after = list_after
        self.next_device = 0
        self.rec = Recorder()
        self.res = Resources([], [], [], [], [])

    def take_device(self) -> Device:
        """A device no earlier request of the bench used (wrapping past the last): a device polls its
        status at most a few times a day, as the backend's per-day limit holds it to."""
        i, self.next_device = self.next_device, (self.next_device + 1) % self.devices
        return device(self.seed, i)

    async def _status(self, method: str, path: str, **kw: Any) -> int:
        async with self.http.request(method, f"{self.url}{path}", **kw) as r:
            await r.read()
            return r.status

    async def _json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.url}{path}", **kw) as r:
            return r.status, (await r.json() if r.status == 200 else await r.read())

    async def flow(self, name: str, planned: float) -> None:
        call = self.rec.call
        if name == "status_poll":
            auth = {"Authorization": f"Bearer {self.take_device().access_token}"}
            await call(name, planned, lambda: self._status("POST", "/v1/ebid/status", headers=auth))
        elif name == "access_token":
            d = self.take_device()
            body = {"clientId": d.client_id, "clientSecret": d.secret}
            await call(name, planned, lambda: self._status("POST", "/v1/ebid/token", json=body))
        elif name == "ebid_batch":
            auth = {"Authorization": f"Bearer {self.take_device().access_token}"}
            await call(name, planned, lambda: self._status("GET", "/v1/ebid/ebids", headers=auth))
        elif name == "list_pull":
            path = f"/v2/gaen/exposed?lastKeyBundleTag={self.list_after}"
            await call(name, planned, lambda: self._status("GET", path))
        elif name == "health_get":
            await call(name, planned, lambda: self._status("GET", "/v1/health"))
        elif name == "dk_upload":
            await self._dk_upload(planned)
        elif name in ("ebid_report", "ebid_dummy_report"):
            await self._ebid_report(name, planned)
        elif name == "ebid_submission":
            body = self.res.real_submissions.pop()
            await call(name, planned, lambda: self._status("POST", "/v1/ebid/submissions", **as_json(body)))
        elif name == "ebid_dummy_submission":
            body = random.choice(self.res.dummy_submissions)
            await call(name, planned, lambda: self._status("POST", "/v1/ebid/submissions", **as_json(body)))
        else:
            raise ValueError(name)

    async def _dk_upload(self, planned: float) -> None:
        """The agent's report: the TAN checked, exchanged, the upload size asked, 14 keys uploaded."""
        tan, call = self.res.tans.pop(), self.rec.call
        raw = wire.tan_bytes(tan)
        if await call("tan_check", planned, lambda: self._status("POST", wire.TAN_CHECK_PATH, **as_json(raw))) is None:
            return
        got: dict[str, Any] = {}

        async def exchange() -> int:
            status, got["body"] = await self._json("POST", "/v1/onset", **as_json(raw))
            return status

        if await call("tan_exchange", time.perf_counter(), exchange) is None:
            return
        token = wire.parse_upload_token(got["body"]).token

        async def health() -> int:
            status, got["health"] = await self._json("GET", "/v1/health")
            return status

        if await call("health_get", time.perf_counter(), health) is None:
            return
        count = wire.parse_health(got["health"]).keys_per_upload
        today = gaen.day_start_enin(gaen.enin(time.time()))
        keys = [PublishedKey(os.urandom(16), today - d * 144) for d in range(1, KEYS_PER_DK_UPLOAD + 1)]
        body = wire.key_upload_body(SchemeName.GAEN, keys, count, None)
        auth = {"Authorization": f"Bearer {token}"}
        await call(
            "key_upload", time.perf_counter(), lambda: self._status("POST", "/v2/gaen/exposed", json=body, headers=auth)
        )

    async def _ebid_report(self, name: str, planned: float) -> None:
        """TAN check, submission key, 16 blind signatures bought (real: with a TAN; dummy: fake)."""
        dummy = name == "ebid_dummy_report"
        tan = None if dummy else self.res.tans.pop()
        suffix, call = "_dummy" if dummy else "", self.rec.call
        raw = wire.tan_bytes(tan)
        if (
            await call(f"tan_check{suffix}", planned, lambda: self._status("POST", wire.TAN_CHECK_PATH, **as_json(raw)))
            is None
        ):
            return
        if (
            await call(
                f"submission_key{suffix}", time.perf_counter(), lambda: self._status("GET", "/v1/ebid/submission-key")
            )
            is None
        ):
            return
        if dummy:
            body = random.choice(self.res.dummy_purchases)
        else:
            body = wire.token_request_batch_bytes(tan, self.res.blinded.pop(), ReportType.CONFIRMED_TEST)
        await call(
            f"token_purchase{suffix}",
            time.perf_counter(),
            lambda: self._status("POST", "/v1/ebid/submission-tokens", **as_json(body)),
        )


def arrivals(flows: list[Flow], multiple: float, seconds: float, rng: random.Random) -> list[tuple[float, str]]:
    """Poisson arrivals of every flow over ``seconds`` at ``multiple`` times its national rate."""
    out: list[tuple[float, str]] = []
    for f in flows:
        rate = f.per_day / DAY * multiple
        t = rng.expovariate(rate)
        while t < seconds:
            out.append((t, f.name))
            t += rng.expovariate(rate)
    out.sort()
    return out


async def run_mix(mix: Mix, flows: list[Flow], multiple: float, seconds: float, seed: int) -> dict[str, Any]:
    plan = arrivals(flows, multiple, seconds, random.Random(seed))
    mix.rec = Recorder()
    tasks: list[asyncio.Task[None]] = []
    late = 0.0
    start = time.perf_counter()
    for at, name in plan:
        wait = start + at - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        late = max(late, -wait)
        tasks.append(asyncio.create_task(mix.flow(name, start + at)))
    sent = time.perf_counter() - start
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    offered = len(plan) / seconds
    endpoints: dict[str, Any] = {}
    for name in sorted(set(mix.rec.latencies) | set(mix.rec.errors)):
        done = mix.rec.latencies.get(name, [])
        errors = dict(mix.rec.errors.get(name, {}))
        endpoints[name] = {
            "requests": len(done) + sum(errors.values()),
            "per_second": round(len(done) / elapsed, 2),
            **latency_figures(done),
            "errors": errors,
        }
    answered = sum(len(v) for v in mix.rec.latencies.values())
    errors_total = sum(sum(e.values()) for e in mix.rec.errors.values())
    worst_p99 = max((e["p99_ms"] for e in endpoints.values()), default=0.0)
    return {
        "multiple": multiple,
        "offered_flows_per_second": round(offered, 1),
        "requests_answered_per_second": round(answered / elapsed, 1),
        "client_late_ms_max": round(1000 * late, 1),
        "send_seconds": round(sent, 1),
        "drain_seconds": round(elapsed - sent, 1),
        "errors": errors_total,
        "worst_p99_ms": worst_p99,
        "sustained": errors_total == 0 and worst_p99 <= P99_BOUND_MS and sent <= seconds * 1.05,
        "endpoints": endpoints,
    }


def needs(flows: list[Flow], multiple: float, seconds: float) -> dict[str, int]:
    """Generous counts of what a run spends (Poisson arrivals scatter around the mean)."""
    rate = {f.name: f.per_day / DAY * multiple * seconds for f in flows}

    def enough(mean: float) -> int:
        return int(mean + 6 * mean**0.5 + 10)

    return {
        "tans": enough(rate.get("dk_upload", 0)) + enough(rate.get("ebid_report", 0)),
        "blinded": enough(rate.get("ebid_report", 0)),
        "real_submissions": enough(rate.get("ebid_submission", 0)),
    }


async def prepare(mix: Mix, store: ServerStore, flows: list[Flow], multiple: float, seconds: float) -> None:
    """Open TANs (the real path: ``issue_tans``), blinded token batches, and real submissions under tokens
    bought before the run, each carrying a contact with a bulk device's real EBID of a past period."""
    want = needs(flows, multiple, seconds)
    tans = await asyncio.to_thread(lambda: [t.code for t in issue_tans(store, time.time(), DAY, None, want["tans"])])
    async with mix.http.get(f"{mix.url}/v1/ebid/submission-key") as r:
        key = wire.parse_submission_keys(await r.json()).key(ReportType.CONFIRMED_TEST)
    k = blind_rsa.modulus_len(key)
    batch = wire.SUBMISSION_TOKEN_BATCH
    blinded = [[p.blinded.blinded_msg for p in submissions.new_tokens(key, batch)] for _ in range(want["blinded"])]
    bodies: list[bytes] = []
    now = time.time()
    period = ebid.period_of(now)
    buy = -(-want["real_submissions"] // batch)
    buy_tans = await asyncio.to_thread(lambda: [t.code for t in issue_tans(store, now, DAY, None, buy)])
    bks = store.existing_broadcast_keys(range(period - 8, period - 1))
    rng = random.Random(multiple)
    for tan in buy_tans:
        pending = submissions.new_tokens(key, batch)
        raw = wire.token_request_batch_bytes(tan, [p.blinded.blinded_msg for p in pending], ReportType.CONFIRMED_TEST)
        async with mix.http.post(f"{mix.url}/v1/ebid/submission-tokens", **as_json(raw)) as r:
            assert r.status == 200, await r.text()
            signed = wire.parse_blind_signatures(await r.json(), batch, k).blind_signatures
        tokens = submissions.finalize_tokens(key, pending, signed)
        contacts = []
        for _ in range(CONTACTS_PER_REPORT):
            p = rng.choice(sorted(bks))
            e = ebid.make_ebid(bks[p], device(mix.seed, rng.randrange(mix.devices)).puid)
            scans = far_scans(p)
            contacts.append(wire.ReportedContact(None, e, p, scans[0].time, scans))
        bodies += [s.body for s in submissions.plan(contacts, tokens, 0.0, rng)]
    dummy_tokens = submissions.new_tokens(key, batch)
    mix.res = Resources(
        tans=tans,
        real_submissions=bodies,
        dummy_purchases=[
            wire.token_request_batch_bytes(
                None, [p.blinded.blinded_msg for p in dummy_tokens], ReportType.CONFIRMED_TEST
            )
        ],
        dummy_submissions=[submissions.dummy_submission(k) for _ in range(64)],
        blinded=blinded,
    )


# ---- closed-loop capacity per endpoint ---------------------------------------------------------------


async def capacity(mix: Mix, n: int, concurrency: int) -> dict[str, dict[str, float]]:
    """Each endpoint alone at full speed, as a ratio to the health GET's rate in the same run."""
    async with mix.http.get(f"{mix.url}/v1/ebid/submission-key") as r:
        key = wire.parse_submission_keys(await r.json()).key(ReportType.CONFIRMED_TEST)
    dummy_purchase = wire.token_request_batch_bytes(
        None,
        [p.blinded.blinded_msg for p in submissions.new_tokens(key, wire.SUBMISSION_TOKEN_BATCH)],
        ReportType.CONFIRMED_TEST,
    )
    dummy_submission = submissions.dummy_submission(blind_rsa.modulus_len(key))
    status_devices = [mix.take_device() for _ in range(n)]

    def expect(method: str, path: str, **kw: Any) -> Callable[[int], Awaitable[None]]:
        async def one(_i: int) -> None:
            async with mix.http.request(method, f"{mix.url}{path}", **kw) as r:
                assert r.status == 200, await r.text()
                await r.read()

        return one

    async def status(i: int) -> None:
        auth = {"Authorization": f"Bearer {status_devices[i].access_token}"}
        async with mix.http.post(f"{mix.url}/v1/ebid/status", headers=auth) as r:
            assert r.status == 200, await r.text()

    out = {"health_get": await timed(n, concurrency, expect("GET", "/v1/health"))}
    out["status_poll"] = await timed(n, concurrency, status)
    out["list_pull"] = await timed(
        max(20, n // 20), concurrency, expect("GET", f"/v2/gaen/exposed?lastKeyBundleTag={mix.list_after}")
    )
    out["token_purchase_dummy"] = await timed(
        max(10, n // 50), concurrency, expect("POST", "/v1/ebid/submission-tokens", **as_json(dummy_purchase))
    )
    out["submission_dummy"] = await timed(
        n // 2, concurrency, expect("POST", "/v1/ebid/submissions", **as_json(dummy_submission))
    )
    base = out["health_get"]["per_second"]
    for figures in out.values():
        figures["ratio_to_health"] = round(figures["per_second"] / base, 3)
    return out


# ---- one worker count --------------------------------------------------------------------------------


async def warm_up(url: str, list_after: int) -> None:
    """Reach every worker (new connections, several at once, so the kernel hands them to different
    workers): its database connections, its keys, the pulled list's export built and cached."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16, force_close=True)) as fresh:

        async def pull(_i: int) -> None:
            async with fresh.get(f"{url}/v2/gaen/exposed?lastKeyBundleTag={list_after}") as r:
                assert r.status == 200, await r.text()
                await r.read()

        await timed(64, 16, pull)


async def bench_workers(
    url: str, store: ServerStore, args: argparse.Namespace, seed: bytes, flows: dict[str, list[Flow]], list_after: int
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        mix = Mix(http, url, seed, args.devices, list_after)
        await warm_up(url, list_after)
        out: dict[str, Any] = {"capacity": await capacity(mix, args.capacity_requests, args.connections)}
        for mix_name, mix_flows in flows.items():
            runs = []
            for multiple in args.multiples:
                await prepare(mix, store, mix_flows, multiple, args.seconds)
                result = await run_mix(mix, mix_flows, multiple, args.seconds, int(multiple * 1000))
                base = out["capacity"]["health_get"]["per_second"]
                for figures in result["endpoints"].values():
                    figures["ratio_to_health_capacity"] = round(figures["per_second"] / base, 4)
                runs.append(result)
                print(
                    f"  {mix_name} x{multiple:g}: {result['requests_answered_per_second']} req/s, "
                    f"worst p99 {result['worst_p99_ms']} ms, errors {result['errors']}",
                    file=sys.stderr,
                )
                if not result["sustained"]:
                    break
            sustained = [r["multiple"] for r in runs if r["sustained"]]
            out[mix_name] = {"highest_multiple_sustained": max(sustained, default=0), "runs": runs}
    return out


def publish_time(cluster_sockets: str, tmp: Path, keys: int) -> dict[str, float]:
    """Seconds to write and sign one export file of ``keys`` keys (one release bucket)."""
    config = backend_config_from_dict({"server": {"data_dir": str(tmp / "pub"), "database": ""}})
    database = database_for(cluster_sockets, tmp / "pub")
    now = time.time()
    load_list(database, keys, buckets.current_tag_ms(now, config.lists.bucket_seconds))
    store = ServerStore(database)
    lists = Lists(config, ManualClock(now), store, KeySigner(config, generate_signing_key()))
    t = time.perf_counter()
    written = lists.publish()
    seconds = time.perf_counter() - t
    size = sum(p.stat().st_size for p in (config.export_dir / "gaen").glob("*.zip"))
    store.close()
    return {"keys": keys, "files": written, "seconds": round(seconds, 2), "file_mib": round(size / 2**20, 2)}


async def sample_registrations(
    url: str, store: ServerStore, database: str, count: int, tx_power: int
) -> dict[str, Any]:
    """Devices through the real path; their rows must have the bulk rows' shape, and each polls 200."""
    issued, _ = issue_enrolment_codes(store, time.time(), DAY, count)
    async with aiohttp.ClientSession() as http:
        creds = [await register_sample(http, url, code, tx_power) for code in issued]
        for c in creds:
            async with http.post(
                f"{url}/v1/ebid/token", json={"clientId": c["clientId"], "clientSecret": c["clientSecret"]}
            ) as r:
                token = (await r.json())["accessToken"]
            async with http.get(f"{url}/v1/ebid/ebids", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200, await r.text()
            async with http.post(f"{url}/v1/ebid/status", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200, await r.text()
    real = row_shapes(database, "client_id = ANY(%s)", ([c["clientId"] for c in creds],))
    return {"registered": len(creds), "row_shapes": sorted(real)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers: a check that the bench runs")
    parser.add_argument("--devices", type=int, help=f"registered EBID devices (default {NATIONAL_DEVICES})")
    parser.add_argument("--seconds", type=float, help="each mix run's length (default 20)")
    parser.add_argument(
        "--multiples", help="multiples of the national rate, ascending (default 0.25,0.5,1,2,4,8,16,32)"
    )
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--publish-keys", type=int, help="keys in the published list file (default 600000)")
    parser.add_argument("--list-keys", type=int, help="keys in the pulled list (default: one bucket's uploads)")
    parser.add_argument("--capacity-requests", type=int, help="requests per endpoint, closed loop (default 2000)")
    parser.add_argument("--connections", type=int, default=64, help="the client's pool (nginx's upstream pool)")
    parser.add_argument("--no-dummy-mix", action="store_true", help="skip the mix without dummy traffic")
    args = parser.parse_args()
    quick = {"devices": 20_000, "seconds": 4.0, "multiples": "1,4", "publish_keys": 20_000, "capacity_requests": 200}
    full = {
        "devices": NATIONAL_DEVICES,
        "seconds": 20.0,
        "multiples": "0.25,0.5,1,2,4,8,16,32",
        "publish_keys": 600_000,
        "capacity_requests": 2000,
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.multiples = [float(m) for m in args.multiples.split(",")]
    args.workers_list = [int(w) for w in args.workers.split(",")]
    bucket = backend_config_from_dict({"server": {"data_dir": "/nonexistent", "database": ""}}).lists.bucket_seconds
    if args.list_keys is None:
        args.list_keys = DK_UPLOADS_PER_DAY * args.devices // NATIONAL_DEVICES * KEYS_PER_DK_UPLOAD * bucket // DAY
    flows = {"agent_defaults": traffic_mix(args.devices, dummy_traffic=True)}
    if not args.no_dummy_mix:
        flows["without_dummy_traffic"] = traffic_mix(args.devices, dummy_traffic=False)
    results: dict[str, Any] = {
        "devices": args.devices,
        "seconds_per_run": args.seconds,
        "p99_bound_ms": P99_BOUND_MS,
        "mix_per_day": {
            name: {
                f.name: {"per_day": round(f.per_day), "per_second_national": round(f.per_day / DAY, 3), "why": f.why}
                for f in fl
            }
            for name, fl in flows.items()
        },
        "list_keys_pulled": args.list_keys,
    }
    seed = os.urandom(16)
    tx_power = -8
    with throwaway_cluster() as cluster, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sockets = str(cluster.socket_dir)
        database = database_for(sockets, tmp / "data")
        now = time.time()
        t = time.perf_counter()
        results["load"] = load_population(database, seed, args.devices, now, tx_power)
        tag = buckets.current_tag_ms(now, bucket)
        load_list(database, args.list_keys, tag)
        results["load"]["total_seconds"] = round(time.perf_counter() - t, 1)
        config = backend_toml(tmp, database)
        subprocess.run(
            [sys.executable, "-m", "agent", "backend", "keygen", "--config", str(config)],
            check=True,
            capture_output=True,
        )
        store = ServerStore(database)
        try:
            for workers in args.workers_list:
                print(f"{workers} worker(s)", file=sys.stderr)
                server, url = start_backend(config, workers)
                try:
                    if "sample" not in results:
                        sample = asyncio.run(sample_registrations(url, store, database, SAMPLE_REGISTRATIONS, tx_power))
                        bulk = row_shapes(database, "id = ANY(%s)", ([device(seed, i).id for i in range(100)],))
                        if bulk != set(sample["row_shapes"]):
                            raise RuntimeError(f"bulk rows {bulk} differ from registered ones {sample['row_shapes']}")
                        sample["bulk_row_shapes"] = sorted(bulk)
                        results["sample"] = sample
                    figures = asyncio.run(bench_workers(url, store, args, seed, flows, tag - bucket * 1000))
                finally:
                    stop_backend(server)
                results[f"workers_{workers}"] = figures
        finally:
            store.close()
        results["list_publish"] = publish_time(sockets, tmp, args.publish_keys)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
