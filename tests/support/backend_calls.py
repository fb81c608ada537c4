"""HTTP calls a device makes on the backend, shared by the server suites: TANs, uploads, and the EBID
registration, token, batch, submission-token and submission steps, spelled once so each test says only
what it checks."""

from typing import Any

import aiohttp

from agent.protocol import blind_rsa, proof_of_work, wire
from agent.schemes import ebid
from agent.schemes.published import ReportType
from agent.sync import submissions
from support.backend_harness import ADMIN_TOKEN, RunningBackend


async def admin_tan(http: aiohttp.ClientSession, rb: RunningBackend, **body: Any) -> str:
    async with http.post(f"{rb.url}/v1/admin/tans", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["tan"]


async def exchange(http: aiohttp.ClientSession, rb: RunningBackend, tan: str) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{rb.url}/v1/onset", json={"tan": tan}) as r:
        return r.status, await r.json()


async def upload(
    http: aiohttp.ClientSession, rb: RunningBackend, token: str, body: object, scheme: str = "gaen"
) -> tuple[int, dict[str, Any]]:
    """Upload ``body`` as JSON; bytes or text go as they are, still labelled ``application/json``."""
    headers = {"Authorization": f"Bearer {token}"}
    kwargs: dict[str, Any] = {"json": body}
    if isinstance(body, bytes | str):
        headers["Content-Type"] = "application/json"
        kwargs = {"data": body}
    async with http.post(f"{rb.url}/v2/{scheme}/exposed", headers=headers, **kwargs) as r:
        return r.status, await r.json()


PERIOD = 900


async def post(http: aiohttp.ClientSession, url: str, body: object = None, token: str | None = None) -> tuple[int, Any]:
    """POST ``body`` as JSON; bytes go as they are, still labelled ``application/json``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"json": body}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        kwargs = {"data": body}
    async with http.post(url, headers=headers, **kwargs) as r:
        return r.status, await r.json()


async def enrolment_codes(http: aiohttp.ClientSession, rb: RunningBackend, count: int = 1) -> list[str]:
    status, answer = await post(http, f"{rb.url}/v1/admin/enrolment-codes", {"count": count}, ADMIN_TOKEN)
    assert status == 201
    return answer["codes"]


async def register(http: aiohttp.ClientSession, rb: RunningBackend, code: str | None = None) -> dict[str, Any]:
    code = code or (await enrolment_codes(http, rb))[0]
    _, challenge = await post(http, f"{rb.url}/v1/ebid/challenge")
    nonce = proof_of_work.solve(wire.unb64(challenge["challenge"], "c"), challenge["difficulty"])
    body = {"challenge": challenge["challenge"], "nonce": nonce, "enrolmentCode": code}
    status, answer = await post(http, f"{rb.url}/v1/ebid/register", body)
    assert status == 201, answer
    return answer


async def access_token(http: aiohttp.ClientSession, rb: RunningBackend, creds: dict[str, Any]) -> str:
    body = {"clientId": creds["clientId"], "clientSecret": creds["clientSecret"]}
    status, answer = await post(http, f"{rb.url}/v1/ebid/token", body)
    assert status == 200, answer
    return answer["accessToken"]


async def batch_of(http: aiohttp.ClientSession, rb: RunningBackend, token: str, periods: int = 8) -> ebid.EbidBatch:
    async with http.get(f"{rb.url}/v1/ebid/ebids?periods={periods}", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return wire.parse_ebid_batch(await r.json())


def contacts_heard(batch: ebid.EbidBatch, start: float, minutes: int, attenuation: int) -> list[wire.ReportedContact]:
    """What a reporting device next to the registered one recorded: per EBID, one scan a minute."""
    by_period: dict[int, list[wire.ScanRecord]] = {}
    for m in range(minutes):
        t = start + 60 * m + 5
        by_period.setdefault(ebid.period_of(t, PERIOD), []).append(wire.ScanRecord(t, attenuation, attenuation - 4))
    entries = {e.period: e for e in batch.entries}
    return [
        wire.ReportedContact(entries[p].ecc, entries[p].ebid, p, scans[0].time, tuple(scans))
        for p, scans in by_period.items()
    ]


async def buy_tokens(
    http: aiohttp.ClientSession,
    rb: RunningBackend,
    tan: str | None,
    report_type: ReportType = ReportType.CONFIRMED_TEST,
) -> list[tuple[bytes, bytes]]:
    """A batch of submission tokens bought with ``tan``, blinded under ``report_type``'s key (the TAN's),
    signed and finalized as the agent does."""
    async with http.get(f"{rb.url}/v1/ebid/submission-key") as r:
        key = wire.parse_submission_keys(await r.json()).key(report_type)
    pending = submissions.new_tokens(key, wire.SUBMISSION_TOKEN_BATCH)
    body = wire.token_request_batch_body(tan, [p.blinded.blinded_msg for p in pending], report_type)
    status, answer = await post(http, f"{rb.url}/v1/ebid/submission-tokens", body)
    assert status == 200, answer
    signatures = wire.parse_blind_signatures(answer, len(pending), blind_rsa.modulus_len(key)).blind_signatures
    return submissions.finalize_tokens(key, pending, signatures)


async def submit(
    http: aiohttp.ClientSession, rb: RunningBackend, token: tuple[bytes, bytes], contact: wire.ReportedContact | None
) -> tuple[int, Any]:
    body = wire.submission_bytes(wire.Submission(token[0], token[1], contact))
    return await post(http, f"{rb.url}/v1/ebid/submissions", body)


async def file_report(
    http: aiohttp.ClientSession, rb: RunningBackend, contacts: list[wire.ReportedContact]
) -> tuple[int, Any]:
    """Every contact as a separate submission under its own token; the first refusal, else the last answer."""
    tokens = await buy_tokens(http, rb, await admin_tan(http, rb))
    answer: tuple[int, Any] = (200, {"status": "accepted"})
    for token, contact in zip(tokens, contacts, strict=False):
        answer = await submit(http, rb, token, contact)
        if answer[0] != 200:
            return answer
    return answer


def registration_id(rb: RunningBackend, creds: dict[str, Any]) -> int:
    reg = rb.backend.store.registration_by_client(creds["clientId"])
    assert reg is not None
    return reg.id
