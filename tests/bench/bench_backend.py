"""Load on the real backend over loopback: concurrent TAN exchanges + uploads, list pulls, EBID reports
(a TAN buying 16 blind-signed tokens, then one submission per token, each on a new connection).

Run: python tests/bench/bench_backend.py [--uploads N] [--pulls M] [--reports R] [--concurrency C]
                                         [--transport plain|tls|both]
Bounded and loopback only (127.0.0.1, a temporary data dir). The baseline, measured in the same run on the
same server, is the rate of a trivial JSON request (GET /v1/health): each figure is also given as a ratio
to it, so read the ratios rather than the absolutes on a shared machine. ``--transport both`` (the
default) runs everything over plain HTTP and then over TLS (a CA made for the run, the server's
``[server] tls_cert_file`` path, the client pinning the CA as ``backend.ca_file`` does), and gives each TLS
figure as a ratio to the plain run's health GET as well; ``*_new_connection`` figures open a connection
(and so do a TLS handshake) per request, as a device's one request a day does. Response-time padding is off
here (it is a fixed floor per request, not a cost). The client runs in the same process and on the same
cores as the server, so absolute rates are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _backend_setup import timed
from aiohttp import web

from agent import risk
from agent.clock import ManualClock
from agent.protocol import blind_rsa, wire
from agent.schemes import ebid, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey, ReportType
from agent.server.app import create_app, open_backend
from agent.server.config import backend_config_from_dict
from agent.server.scoring import ServerRiskScorer
from agent.server.serve import tls_context
from agent.server.signing import KeySigner
from agent.server.uploads import issue_tans
from agent.signing_keys import generate_signing_key
from agent.sync import submissions
from agent.testbed.pki import make_ca

T0 = 1_763_978_400.0  # a 10:00 UTC
KEYS_PER_UPLOAD = 30
REAL_KEYS = 14
JSON = {"Content-Type": "application/json"}


async def bench(
    uploads: int, pulls: int, reports: int, concurrency: int, data_dir: Path, tls: bool = False
) -> dict[str, Any]:
    clock = ManualClock(T0)
    server_section: dict[str, Any] = {"data_dir": str(data_dir), "max_body_bytes": 1_048_576}
    client_tls: ssl.SSLContext | bool = False
    if tls:
        pki = make_ca(data_dir / "pki", "bench")
        server_section |= {"tls_cert_file": str(pki.cert_file), "tls_key_file": str(pki.key_file)}
        client_tls = ssl.create_default_context(cafile=str(pki.ca_file))
    config = backend_config_from_dict(
        {
            "server": server_section,
            "upload": {"keys_per_upload": KEYS_PER_UPLOAD, "min_response_seconds": 0},
            "tan": {"max_failures_per_hour": 1_000_000},
            "ebid": {"pow_difficulty": 0},
        }
    )
    backend = open_backend(
        config, clock, KeySigner(config, generate_signing_key()), ServerRiskScorer(risk.RiskSettings())
    )
    runner = web.AppRunner(create_app(backend), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_context(config))
    await site.start()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    today = gaen.day_start_enin(gaen.enin(T0))
    out: dict[str, Any] = {"transport": "tls" if tls else "plain"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency, ssl=client_tls)) as fresh:

        async def health_new_connection(_: int) -> None:
            async with fresh.get(f"{url}/v1/health", headers={"Connection": "close"}) as r:
                assert r.status == 200
                await r.read()

        out["health_new_connection"] = await timed(max(100, pulls // 4), concurrency, health_new_connection)
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=client_tls)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def health(_: int) -> None:
            async with http.get(f"{url}/v1/health") as r:
                assert r.status == 200
                await r.read()

        await timed(100, concurrency, health)  # warm-up
        runs = [await timed(max(uploads, pulls), concurrency, health) for _ in range(3)]
        baseline = sorted(runs, key=lambda r: r["per_second"])[1]  # the median run
        out["baseline_health"] = baseline
        out["health_new_connection"]["ratio_vs_baseline"] = round(
            out["health_new_connection"]["per_second"] / baseline["per_second"], 3
        )

        tans = [t.code for t in issue_tans(backend.store, T0, 86_400, None, uploads + reports)]

        async def upload(i: int) -> None:
            async with http.post(f"{url}/v1/onset", json={"tan": tans[i]}) as r:
                token = (await r.json())["token"]
            keys = [PublishedKey(os.urandom(16), today - d * 144) for d in range(1, REAL_KEYS + 1)]
            body = wire.key_upload_body(SchemeName.GAEN, keys, KEYS_PER_UPLOAD, None)
            async with http.post(
                f"{url}/v2/gaen/exposed", json=body, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 200, await r.text()

        up = await timed(uploads, concurrency, upload)
        up["requests_per_upload"] = 2
        up["ratio_requests_vs_baseline"] = round(2 * up["per_second"] / baseline["per_second"], 3)
        out["uploads_tan_exchange_plus_30_keys"] = up

        await clock.advance(7200)  # the bucket closes: every uploaded key is released
        sizes: list[int] = []

        async def pull(_: int) -> None:
            async with http.get(f"{url}/v2/gaen/exposed") as r:
                assert r.status == 200
                sizes.append(len(await r.read()))

        t = time.perf_counter()
        await pull(0)
        out["first_pull_builds_and_signs_export_ms"] = round(1000 * (time.perf_counter() - t), 1)
        full = await timed(pulls, concurrency, pull)
        full["keys_in_list"] = uploads * REAL_KEYS
        full["bytes_per_list"] = sizes[-1]
        full["mib_per_second"] = round(full["per_second"] * sizes[-1] / 1_048_576, 1)
        full["ratio_vs_baseline"] = round(full["per_second"] / baseline["per_second"], 3)
        out["pulls_full_list"] = full
        tag = backend.lists.exposed(SchemeName.GAEN, None).tag

        async def pull_nothing_new(_: int) -> None:
            async with http.get(f"{url}/v2/gaen/exposed?lastKeyBundleTag={tag}") as r:
                assert r.status == 204

        empty = await timed(pulls, concurrency, pull_nothing_new)
        empty["ratio_vs_baseline"] = round(empty["per_second"] / baseline["per_second"], 3)
        out["pulls_nothing_new_204"] = empty

        # EBID: one registered device; each report is 16 contacts of 15 scans, sent as the agent sends them:
        # the TAN buys 16 blind-signed tokens, then each contact goes alone on a new connection
        codes, _ = backend.ebid.issue_enrolment_codes(1)
        async with http.post(f"{url}/v1/ebid/challenge") as r:
            ch = await r.json()
        body = {"challenge": ch["challenge"], "nonce": 0, "enrolmentCode": codes[0]}
        async with http.post(f"{url}/v1/ebid/register", json=body) as r:
            creds = await r.json()
        async with http.post(
            f"{url}/v1/ebid/token", json={"clientId": creds["clientId"], "clientSecret": creds["clientSecret"]}
        ) as r:
            access = (await r.json())["accessToken"]
        async with http.get(f"{url}/v1/ebid/ebids?periods=20", headers={"Authorization": f"Bearer {access}"}) as r:
            batch = wire.parse_ebid_batch(await r.json())
        await clock.advance(20 * 900)
        contacts = [
            wire.ReportedContact(
                e.ecc,
                e.ebid,
                e.period,
                e.period * 900.0 + 1,
                tuple(wire.ScanRecord(e.period * 900.0 + 60 * s + 1, 60, 55) for s in range(15)),
            )
            for e in batch.entries[: wire.SUBMISSION_TOKEN_BATCH]
        ]
        async with http.get(f"{url}/v1/ebid/submission-key") as r:
            key = wire.parse_submission_keys(await r.json()).key(ReportType.CONFIRMED_TEST)
        k = blind_rsa.modulus_len(key)
        pending = [submissions.new_tokens(key, wire.SUBMISSION_TOKEN_BATCH) for _ in range(reports)]  # client work
        bought: list[object] = [None] * reports

        async def buy_tokens(i: int) -> None:
            blinded = [p.blinded.blinded_msg for p in pending[i]]
            body = wire.token_request_batch_bytes(tans[uploads + i], blinded, ReportType.CONFIRMED_TEST)
            async with http.post(f"{url}/v1/ebid/submission-tokens", data=body, headers=JSON) as r:
                assert r.status == 200, await r.text()
                bought[i] = await r.json()

        buy = await timed(reports, concurrency, buy_tokens)
        buy["tokens_per_purchase"] = wire.SUBMISSION_TOKEN_BATCH
        buy["blind_signatures_per_second"] = round(buy["per_second"] * wire.SUBMISSION_TOKEN_BATCH, 1)
        buy["ratio_vs_baseline"] = round(buy["per_second"] / baseline["per_second"], 3)
        out["ebid_tan_buys_16_tokens"] = buy
        bodies = []
        for i in range(reports):
            signatures = wire.parse_blind_signatures(bought[i], wire.SUBMISSION_TOKEN_BATCH, k).blind_signatures
            tokens = submissions.finalize_tokens(key, pending[i], signatures)
            bodies += [p.body for p in submissions.plan(contacts, tokens, 0.0, random.Random(i))]
        one_off = aiohttp.TCPConnector(limit=concurrency, ssl=client_tls, force_close=True)
        async with aiohttp.ClientSession(connector=one_off) as separate:

            async def submit(i: int) -> None:
                async with separate.post(f"{url}/v1/ebid/submissions", data=bodies[i], headers=JSON) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            sent = await timed(len(bodies), concurrency, submit)
        sent["bytes_per_submission"] = len(bodies[0])
        sent["ratio_vs_baseline"] = round(sent["per_second"] / baseline["per_second"], 3)
        sent["ratio_vs_health_new_connection"] = round(
            sent["per_second"] / out["health_new_connection"]["per_second"], 3
        )
        out["ebid_submissions_new_connection"] = sent
        reg = backend.store.registration_by_client(creds["clientId"])
        assert reg is not None
        scored = len(backend.store.exposures_of(reg.id))  # repeated contacts are one exposure each
        async with http.post(
            f"{url}/v1/ebid/token", json={"clientId": creds["clientId"], "clientSecret": creds["clientSecret"]}
        ) as r:
            access = (await r.json())["accessToken"]  # the first one expired while time moved on
        t = time.perf_counter()
        async with http.post(f"{url}/v1/ebid/status", headers={"Authorization": f"Bearer {access}"}) as r:
            verdict = await r.json()
        out["status_scoring_ms"] = round(1000 * (time.perf_counter() - t), 1)
        out["status_exposures_scored"] = scored
        out["status_at_risk"] = verdict["atRisk"]
        assert ebid.period_of(clock.now()) > batch.entries[-1].period
    await runner.cleanup()
    return out


RATES = {
    "uploads_tan_exchange_plus_30_keys": "uploads_per_s",
    "ebid_tan_buys_16_tokens": "ebid_token_purchases_per_s",
    "ebid_submissions_new_connection": "ebid_submissions_per_s",
    "pulls_full_list": "full_list_pulls_per_s",
    "pulls_nothing_new_204": "empty_pulls_per_s",
    "health_new_connection": "health_new_connection_per_s",
}


def versus_plain(plain: dict[str, Any], tls: dict[str, Any]) -> dict[str, Any]:
    """Each TLS rate against the plain run's health GET (the one baseline of the run) and against the same
    figure over plain HTTP."""
    base = plain["baseline_health"]["per_second"]
    out: dict[str, Any] = {"plain_health_per_s": base, "tls_health_per_s": tls["baseline_health"]["per_second"]}
    for name, label in RATES.items():
        out[label] = {
            "plain": plain[name]["per_second"],
            "tls": tls[name]["per_second"],
            "tls_vs_plain_health": round(tls[name]["per_second"] / base, 3),
            "tls_vs_plain_same": round(tls[name]["per_second"] / plain[name]["per_second"], 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=500)
    parser.add_argument("--pulls", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=30, help="EBID reports (16 tokens and submissions each)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--transport", choices=["plain", "tls", "both"], default="both")
    args = parser.parse_args()
    result: dict[str, Any] = {"params": vars(args)}
    for tls in {"plain": [False], "tls": [True], "both": [False, True]}[args.transport]:
        with tempfile.TemporaryDirectory(prefix="pt-bench-backend-") as tmp:
            run = bench(args.uploads, args.pulls, args.reports, args.concurrency, Path(tmp), tls)
            result["tls" if tls else "plain"] = asyncio.run(run)
    if args.transport == "both":
        result["tls_versus_plain"] = versus_plain(result["plain"], result["tls"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
