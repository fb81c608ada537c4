"""The JSON bodies the backend and the agent exchange, with their parsers and builders.

Both sides import this module, so a field renamed here is renamed for both; the parsers are strict (every
field typed, every length checked) and say which field is wrong, because a backend must answer a bad
upload with a clear 400 and leave its store untouched. Binary values travel as standard base64.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from agent.clock import date_to_day, day_to_iso
from agent.protocol import blind_rsa
from agent.protocol.fields import WireError, b64, boolean, integer, listed, number, obj_of, string, unb64
from agent.protocol.proof_of_work import MAX_DIFFICULTY, NONCE_LEN
from agent.schemes import dp3t, ebid, gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey, ReportType

KEY_SCHEMES = (SchemeName.DP3T, SchemeName.GAEN)
KEY_LEN = {SchemeName.DP3T: dp3t.SK_LEN, SchemeName.GAEN: gaen.TEK_LEN}
MAX_TRANSMISSION_RISK = 8
CHALLENGE_LEN = 16
EBID_REFERENCE_TX_POWER = 0
"""dBm. EBID adverts carry no TX power (``agent.schemes.ebid``), so a reporting device computes each scan's
attenuation as if the sender radiated this, and flags it ``txPowerAssumed``; the backend, which knows the
heard device's declared TX power from its registration, adds that to get the true attenuation."""


def day_of_date(value: object, field: str) -> int | None:
    """A YYYY-MM-DD (or null) as a UTC day number."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise WireError(f"{field}: expected a date YYYY-MM-DD")
    try:
        date = dt.date.fromisoformat(value)
    except ValueError:
        raise WireError(f"{field}: expected a date YYYY-MM-DD, got {value!r}") from None
    return date_to_day(date)


def date_of_day(day: int | None) -> str | None:
    return None if day is None else day_to_iso(day)


# ---- key uploads (DP-3T and GAEN) --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyUpload:
    """The real keys of an upload (fake ones already dropped) and the onset the device claims."""

    keys: tuple[PublishedKey, ...]
    onset_day: int | None


def parse_key_upload(body: object, scheme: SchemeName, expected: int) -> KeyUpload:
    """``{"keys": [{keyData, rollingStartNumber, rollingPeriod, transmissionRiskLevel, fake}], "onset"}``
    with exactly ``expected`` entries (real + fake)."""
    obj = obj_of(body, "body")
    entries = listed(obj, "keys", "body")
    if len(entries) > expected:
        raise WireError(f"body.keys: too many keys ({len(entries)}, the maximum is {expected})")
    if len(entries) < expected:
        raise WireError(f"body.keys: expected exactly {expected} keys (pad with fake keys), got {len(entries)}")
    real: list[PublishedKey] = []
    seen: set[bytes] = set()
    for i, entry in enumerate(entries):
        field = f"body.keys[{i}]"
        e = obj_of(entry, field)
        data = unb64(e.get("keyData"), f"{field}.keyData", KEY_LEN[scheme])
        start = integer(e, "rollingStartNumber", field, 0, 2**31 - 1 - gaen.ROLLING_PERIOD)
        period = integer(e, "rollingPeriod", field, 1, 144, default=144)
        risk = integer(e, "transmissionRiskLevel", field, 0, MAX_TRANSMISSION_RISK, default=0)
        fake = integer(e, "fake", field, 0, 1, default=0)
        if scheme is SchemeName.DP3T and (start % gaen.ROLLING_PERIOD or period != gaen.ROLLING_PERIOD):
            raise WireError(f"{field}: a DP-3T key starts a day (rollingStartNumber = day * 144, period 144)")
        if fake:
            continue
        if data in seen:
            raise WireError(f"{field}.keyData: the same key appears twice")
        seen.add(data)
        real.append(PublishedKey(data, start, period, transmission_risk_level=risk))
    return KeyUpload(tuple(real), day_of_date(obj.get("onset"), "body.onset"))


def key_upload_body(
    scheme: SchemeName,
    keys: Sequence[PublishedKey],
    count: int,
    onset_day: int | None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> dict[str, Any]:
    """The upload body: the real keys, then fake keys that look alike (random data, a plausible day), in
    a random order, ``count`` in all."""
    if len(keys) > count:
        raise ValueError(f"{len(keys)} keys do not fit an upload of {count}")
    starts = [k.rolling_start_interval_number for k in keys] or [0]
    entries = [_key_entry(k, fake=False) for k in keys]
    for i in range(count - len(keys)):
        start = starts[i % len(starts)] - gaen.ROLLING_PERIOD * (1 + i // len(starts))
        fake = PublishedKey(random_bytes(KEY_LEN[scheme]), max(0, start))
        entries.append(_key_entry(fake, fake=True))
    order = sorted(range(len(entries)), key=lambda _: random_bytes(4))
    return {"keys": [entries[i] for i in order], "onset": date_of_day(onset_day)}


def _key_entry(key: PublishedKey, fake: bool) -> dict[str, Any]:
    return {
        "keyData": b64(key.key_data),
        "rollingStartNumber": key.rolling_start_interval_number,
        "rollingPeriod": key.rolling_period,
        "transmissionRiskLevel": key.transmission_risk_level,
        "fake": int(fake),
    }


# ---- EBID batches and reports ------------------------------------------------------------------------


def ebid_batch_body(batch: ebid.EbidBatch) -> dict[str, Any]:
    return {
        "periodSeconds": batch.period_seconds,
        "entries": [{"period": e.period, "ebid": b64(e.ebid), "ecc": e.ecc} for e in batch.entries],
    }


def parse_ebid_batch(body: object) -> ebid.EbidBatch:
    obj = obj_of(body, "body")
    period_seconds = integer(obj, "periodSeconds", "body", 1, 86_400)
    entries = []
    for i, entry in enumerate(listed(obj, "entries", "body")):
        field = f"body.entries[{i}]"
        e = obj_of(entry, field)
        entries.append(
            ebid.EbidEntry(
                period=integer(e, "period", field, 0, 2**40),
                ebid=unb64(e.get("ebid"), f"{field}.ebid", ebid.EBID_LEN),
                ecc=integer(e, "ecc", field, 0, 255),
            )
        )
    return ebid.EbidBatch(period_seconds, tuple(entries))


@dataclass(frozen=True)
class ScanRecord:
    """One scan window in which a contact's EBID was heard, reduced to what risk scoring needs: when it
    was first heard in that window and its typical (mean) and minimum attenuation in dB. ``assumed_tx_power``:
    the sender's TX power was unknown and the risk model's default was used (sent only when true, so the
    backend's verdict can say so as a device's own would)."""

    time: float
    typical_attenuation: int
    min_attenuation: int
    assumed_tx_power: bool = False


@dataclass(frozen=True)
class ReportedContact:
    """An EBID the reporting device received: ECC ‖ EBID, the period it claims, when it was first heard.
    ``ecc`` None: the device did not keep the ECC; the backend then takes the EBID for one of its own."""

    ecc: int | None
    ebid: bytes
    period: int
    time: float
    scans: tuple[ScanRecord, ...]


def scans_body(scans: Sequence[ScanRecord]) -> list[dict[str, Any]]:
    return [_scan_body(s) for s in scans]


def _scan_body(s: ScanRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "time": s.time,
        "typicalAttenuation": s.typical_attenuation,
        "minAttenuation": s.min_attenuation,
    }
    if s.assumed_tx_power:
        body["txPowerAssumed"] = True
    return body


def parse_scans(value: object, field: str) -> tuple[ScanRecord, ...]:
    if not isinstance(value, list) or not value:
        raise WireError(f"{field}: expected a non-empty list")
    scans = []
    for j, scan in enumerate(value):
        sf = f"{field}[{j}]"
        s = obj_of(scan, sf)
        scans.append(
            ScanRecord(
                time=number(s, "time", sf),
                typical_attenuation=integer(s, "typicalAttenuation", sf, 0, 255),
                min_attenuation=integer(s, "minAttenuation", sf, 0, 255),
                assumed_tx_power=boolean(s, "txPowerAssumed", sf, default=False),
            )
        )
    return tuple(scans)


def contact_body(c: ReportedContact) -> dict[str, Any]:
    return {"ecc": c.ecc, "ebid": b64(c.ebid), "period": c.period, "time": c.time, "scans": scans_body(c.scans)}


def parse_contacts(body: object, max_contacts: int) -> tuple[ReportedContact, ...]:
    """``{"contacts": [{ecc, ebid, period, time, scans: [{time, typicalAttenuation, minAttenuation}]}]}``."""
    obj = obj_of(body, "body")
    items = listed(obj, "contacts", "body")
    if len(items) > max_contacts:
        raise WireError(f"body.contacts: too many contacts ({len(items)}, the maximum is {max_contacts})")
    out = []
    for i, item in enumerate(items):
        field = f"body.contacts[{i}]"
        e = obj_of(item, field)
        out.append(
            ReportedContact(
                ecc=None if e.get("ecc") is None else integer(e, "ecc", field, 0, 255),
                ebid=unb64(e.get("ebid"), f"{field}.ebid", ebid.EBID_LEN),
                period=integer(e, "period", field, 0, 2**40),
                time=number(e, "time", field),
                scans=parse_scans(e.get("scans"), f"{field}.scans"),
            )
        )
    return tuple(out)


def contacts_body(contacts: Sequence[ReportedContact]) -> dict[str, Any]:
    return {"contacts": [contact_body(c) for c in contacts]}


# ---- health and the upload token ---------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """``GET /v1/health``: the backend's public parameters a device adapts to (the upload size above all:
    every key upload is padded to exactly ``keys_per_upload``)."""

    country_code: int
    keys_per_upload: int
    bucket_seconds: int
    period_seconds: int
    pow_difficulty: int
    status_polls_per_day: int


def health_body(h: Health) -> dict[str, Any]:
    return {
        "status": "ok",
        "countryCode": h.country_code,
        "keysPerUpload": h.keys_per_upload,
        "bucketSeconds": h.bucket_seconds,
        "periodSeconds": h.period_seconds,
        "powDifficulty": h.pow_difficulty,
        "statusPollsPerDay": h.status_polls_per_day,
    }


def parse_health(body: object) -> Health:
    obj = obj_of(body, "body")
    return Health(
        country_code=integer(obj, "countryCode", "body", 0, 255),
        keys_per_upload=integer(obj, "keysPerUpload", "body", 0, 1_000_000),
        bucket_seconds=integer(obj, "bucketSeconds", "body", 1, 86_400),
        period_seconds=integer(obj, "periodSeconds", "body", 1, 86_400),
        pow_difficulty=integer(obj, "powDifficulty", "body", 0, MAX_DIFFICULTY),
        status_polls_per_day=integer(obj, "statusPollsPerDay", "body", 0, 1_000_000),
    )


def tan_body(tan: str) -> dict[str, Any]:
    """``POST /v1/onset``: the TAN a health authority gave, traded for a one-time upload token."""
    return {"tan": tan}


def tan_bytes(tan: str | None) -> bytes:
    """The TAN exchange as sent by the agent, padded; ``None``: a dummy exchange (``"fake": true``)."""
    return padded_json({"fake": True} if tan is None else tan_body(tan), PADDED_REQUEST_BYTES)


REPORT_TYPES = frozenset({ReportType.CONFIRMED_TEST, ReportType.CONFIRMED_CLINICAL_DIAGNOSIS, ReportType.SELF_REPORT})
"""The report types a TAN can carry (the export's ReportType numbers; RECURSIVE and REVOKED are not a
diagnosis)."""
PADDED_ANSWER_BYTES = 256
"""A TAN exchange's answer is padded to a multiple of this, so one with the officer's onset date, one
without and a dummy exchange's answer are as long on the wire."""


@dataclass(frozen=True)
class TanGrant:
    """What a spent TAN tells the device: the officer's onset day (None: not given) and report type, so the
    device publishes exactly the contagious window and its keys say why they were published."""

    onset_day: int | None = None
    report_type: ReportType = ReportType.CONFIRMED_TEST


def tan_grant_body(g: TanGrant) -> dict[str, Any]:
    return {"onset": date_of_day(g.onset_day), "reportType": int(g.report_type)}


def parse_tan_grant(obj: dict[str, Any]) -> TanGrant:
    report_type = integer(obj, "reportType", "body", 0, 7)
    if report_type not in REPORT_TYPES:
        raise WireError(f"body.reportType: {report_type} is not a diagnosis report type")
    return TanGrant(day_of_date(obj.get("onset"), "body.onset"), ReportType(report_type))


TAN_CHECK_PATH = "/v1/tan/check"
"""``POST`` a TAN (``tan_bytes``) to learn what the officer set on it without spending it: the device shows
the contagious window and asks for consent first, and only the report the person agreed to spends the
TAN. Answered ``tan_grant_bytes``."""


def tan_grant_bytes(g: TanGrant) -> bytes:
    """A TAN check's answer, padded, so one with an onset date, one without and a dummy's are as long."""
    return padded_json(tan_grant_body(g), PADDED_ANSWER_BYTES)


def parse_tan_check(body: object) -> TanGrant:
    return parse_tan_grant(obj_of(body, "body"))


@dataclass(frozen=True)
class UploadToken:
    token: str
    expires_at: float
    grant: TanGrant = TanGrant()


def upload_token_bytes(t: UploadToken) -> bytes:
    return padded_json({"token": t.token, "expiresAt": t.expires_at, **tan_grant_body(t.grant)}, PADDED_ANSWER_BYTES)


def parse_upload_token(body: object) -> UploadToken:
    obj = obj_of(body, "body")
    return UploadToken(string(obj, "token", "body", 256), number(obj, "expiresAt", "body"), parse_tan_grant(obj))


# ---- EBID registration, access tokens and the risk verdict --------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """``POST /v1/ebid/challenge``: what the proof of work is done on, how hard, and until when."""

    challenge: bytes
    difficulty: int
    expires_at: float


def challenge_body(c: Challenge) -> dict[str, Any]:
    return {"challenge": b64(c.challenge), "difficulty": c.difficulty, "expiresAt": c.expires_at}


def parse_challenge(body: object) -> Challenge:
    obj = obj_of(body, "body")
    return Challenge(
        challenge=unb64(obj.get("challenge"), "body.challenge", CHALLENGE_LEN),
        difficulty=integer(obj, "difficulty", "body", 0, MAX_DIFFICULTY),
        expires_at=number(obj, "expiresAt", "body"),
    )


@dataclass(frozen=True)
class Capability:
    """A re-registration capability: a prepared token message (``blind_rsa.prepare``) and the backend's RSA
    blind signature on it under its re-registration key. The backend signed it blind at the previous
    registration, so when it is spent it cannot tell which registration it was issued to."""

    token: bytes
    signature: bytes


MAX_MODULUS_BYTES = 512
"""The largest RSA modulus a blind signature or blinded message may be sized for (4096 bits, as
``parse_submission_key`` allows); the backend checks the exact length against its own key."""


@dataclass(frozen=True)
class Registration:
    """``POST /v1/ebid/register``: the solved challenge; what pays for the pseudonym, either the operator's
    enrolment code or a re-registration ``capability`` from the previous registration (exactly one); the TX
    power the device advertises at (its calibration; None when unknown), which its adverts no longer carry;
    and ``blinded_capability``, the blinded token the backend signs as this registration's capability
    (None: the device wants none)."""

    challenge: bytes
    nonce: int
    enrolment_code: str | None
    tx_power: int | None = None
    capability: Capability | None = None
    blinded_capability: bytes | None = None


def registration_body(r: Registration) -> dict[str, Any]:
    body: dict[str, Any] = {"challenge": b64(r.challenge), "nonce": r.nonce}
    if r.enrolment_code is not None:
        body["enrolmentCode"] = r.enrolment_code
    if r.capability is not None:
        body["capability"] = {"token": b64(r.capability.token), "signature": b64(r.capability.signature)}
    if r.tx_power is not None:
        body["txPower"] = r.tx_power
    if r.blinded_capability is not None:
        body["blindedCapability"] = b64(r.blinded_capability)
    return body


def _capability(value: object) -> Capability:
    obj = obj_of(value, "body.capability")
    token = unb64(obj.get("token"), "body.capability.token", blind_rsa.PREFIX_LEN + TOKEN_MESSAGE_LEN)
    signature = unb64(obj.get("signature"), "body.capability.signature")
    if not 1 <= len(signature) <= MAX_MODULUS_BYTES:
        raise WireError(f"body.capability.signature: expected at most {MAX_MODULUS_BYTES} bytes")
    return Capability(token, signature)


def parse_registration(body: object) -> Registration:
    """Checked in this order (challenge, nonce, code or capability), so the first bad field is the one named."""
    obj = obj_of(body, "body")
    challenge = unb64(obj.get("challenge"), "body.challenge", CHALLENGE_LEN)
    nonce = integer(obj, "nonce", "body", 0, 2 ** (8 * NONCE_LEN) - 1)
    has_code, has_capability = obj.get("enrolmentCode") is not None, obj.get("capability") is not None
    if has_code == has_capability:
        raise WireError("body: expected either enrolmentCode or capability")
    blinded = None
    if obj.get("blindedCapability") is not None:
        blinded = unb64(obj.get("blindedCapability"), "body.blindedCapability")
        if not 1 <= len(blinded) <= MAX_MODULUS_BYTES:
            raise WireError(f"body.blindedCapability: expected at most {MAX_MODULUS_BYTES} bytes")
    return Registration(
        challenge=challenge,
        nonce=nonce,
        enrolment_code=string(obj, "enrolmentCode", "body", 64) if has_code else None,
        tx_power=None if obj.get("txPower") is None else integer(obj, "txPower", "body", -127, 127),
        capability=_capability(obj.get("capability")) if has_capability else None,
        blinded_capability=blinded,
    )


@dataclass(frozen=True)
class ClientCredentials:
    """The answer to a registration: what the device trades for access tokens, the backend's EBID
    parameters, and the blind signature on the device's blinded capability (None when it sent none).
    Also the body of ``POST /v1/ebid/token`` (id and secret only)."""

    client_id: str
    client_secret: str
    country_code: int = 0
    period_seconds: int = ebid.DEFAULT_PERIOD_SECONDS
    capability_signature: bytes | None = None


def credentials_body(c: ClientCredentials) -> dict[str, Any]:
    body: dict[str, Any] = {
        "clientId": c.client_id,
        "clientSecret": c.client_secret,
        "countryCode": c.country_code,
        "periodSeconds": c.period_seconds,
    }
    if c.capability_signature is not None:
        body["capabilitySignature"] = b64(c.capability_signature)
    return body


def parse_credentials(body: object) -> ClientCredentials:
    obj = obj_of(body, "body")
    signature = obj.get("capabilitySignature")
    return ClientCredentials(
        client_id=string(obj, "clientId", "body", 64),
        client_secret=string(obj, "clientSecret", "body", 128),
        country_code=integer(obj, "countryCode", "body", 0, 255),
        period_seconds=integer(obj, "periodSeconds", "body", 1, 86_400),
        capability_signature=None if signature is None else unb64(signature, "body.capabilitySignature"),
    )


def token_request_body(client_id: str, client_secret: str) -> dict[str, Any]:
    return {"clientId": client_id, "clientSecret": client_secret}


def parse_token_request(body: object) -> ClientCredentials:
    obj = obj_of(body, "body")
    return ClientCredentials(string(obj, "clientId", "body", 64), string(obj, "clientSecret", "body", 128))


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: float


def access_token_body(t: AccessToken) -> dict[str, Any]:
    return {"accessToken": t.token, "expiresAt": t.expires_at}


def parse_access_token(body: object) -> AccessToken:
    obj = obj_of(body, "body")
    return AccessToken(string(obj, "accessToken", "body", 256), number(obj, "expiresAt", "body"))


@dataclass(frozen=True)
class RiskVerdict:
    """``POST /v1/ebid/status``: the backend's answer to "am I at risk?". An at-risk verdict erases the
    pseudonym on the backend, so ``must_register_again`` comes with it."""

    at_risk: bool
    explanation: dict[str, Any]
    polls_left_today: int
    must_register_again: bool


def risk_verdict_body(v: RiskVerdict) -> dict[str, Any]:
    return {
        "atRisk": v.at_risk,
        "explanation": v.explanation,
        "pollsLeftToday": v.polls_left_today,
        "mustRegisterAgain": v.must_register_again,
    }


def parse_risk_verdict(body: object) -> RiskVerdict:
    obj = obj_of(body, "body")
    explanation = obj.get("explanation") or {}
    return RiskVerdict(
        at_risk=boolean(obj, "atRisk", "body"),
        explanation=dict(obj_of(explanation, "body.explanation")),
        polls_left_today=integer(obj, "pollsLeftToday", "body", 0, 1_000_000, default=0),
        must_register_again=boolean(obj, "mustRegisterAgain", "body", default=False),
    )


# ---- small request bodies ----------------------------------------------------------------------------


def required_str(body: object, name: str, max_len: int = 256) -> str:
    return string(obj_of(body, "body"), name, "body", max_len)


def optional_bool(body: object, name: str) -> bool:
    return boolean(obj_of(body, "body"), name, "body", default=False)


def required_int(body: object, name: str, lo: int, hi: int) -> int:
    return integer(obj_of(body, "body"), name, "body", lo, hi)


def optional_int(body: object, name: str, lo: int, hi: int, default: int) -> int:
    return integer(obj_of(body, "body"), name, "body", lo, hi, default=default)


# ---- EBID submissions: blind-signed tokens, one contact per request -----------------------------------

SUBMISSION_TOKEN_BATCH = 16
"""A TAN buys submission tokens in multiples of this, so the count asked for says only "up to 16 contacts"
(or 32, …), never the exact number; the device spends every token, unused ones on padding submissions.
Small because each token costs the backend one RSA-2048 private operation (about 30 ms in Python)."""
MAX_SUBMISSION_TOKENS = 64 * SUBMISSION_TOKEN_BATCH
TOKEN_MESSAGE_LEN = 32
SUBMISSION_BODY_BYTES = 4096
"""Every submission body (real, padding or dummy) is padded to a multiple of this many bytes of JSON; a
contact of up to about 40 scan records fits in one, so nearly all submissions are exactly this long."""


@dataclass(frozen=True)
class SubmissionKey:
    """The backend's RSA key for blind-signed submission tokens (RFC 9474, RSABSSA-SHA384-PSS-Randomized)."""

    public_key: rsa.RSAPublicKey


def submission_key_body(k: SubmissionKey) -> dict[str, Any]:
    numbers = k.public_key.public_numbers()
    n_len = (k.public_key.key_size + 7) // 8
    return {"variant": blind_rsa.VARIANT, "n": b64(numbers.n.to_bytes(n_len, "big")), "e": numbers.e}


def parse_submission_key(body: object) -> SubmissionKey:
    obj = obj_of(body, "body")
    if obj.get("variant") != blind_rsa.VARIANT:
        raise WireError(f"body.variant: expected {blind_rsa.VARIANT}")
    n = int.from_bytes(unb64(obj.get("n"), "body.n"), "big")
    e = integer(obj, "e", "body", 3, 2**32)
    if not 2**2047 <= n < 2**4096:
        raise WireError("body.n: expected a 2048- to 4096-bit modulus")
    return SubmissionKey(rsa.RSAPublicNumbers(e, n).public_key())


@dataclass(frozen=True)
class SubmissionKeys:
    """The backend's submission-token keys, one per report type a TAN can carry (``REPORT_TYPES``): the key
    that signed a token is the report type of every contact filed under it, and since every report of that
    type shares it, it names nobody. All have the same modulus length, so a token request, its answer and a
    submission are as long whatever the type (and a dummy's as a real one's)."""

    by_type: dict[ReportType, rsa.RSAPublicKey]

    def key(self, report_type: ReportType) -> rsa.RSAPublicKey:
        return self.by_type[report_type]


def submission_keys_body(k: SubmissionKeys) -> dict[str, Any]:
    keys = []
    for report_type, pk in sorted(k.by_type.items()):
        body = submission_key_body(SubmissionKey(pk))
        keys.append({"reportType": int(report_type), "n": body["n"], "e": body["e"]})
    return {"variant": blind_rsa.VARIANT, "keys": keys}


def parse_submission_keys(body: object) -> SubmissionKeys:
    obj = obj_of(body, "body")
    items = listed(obj, "keys", "body")
    by_type: dict[ReportType, rsa.RSAPublicKey] = {}
    for i, item in enumerate(items):
        where = f"body.keys[{i}]"
        entry = obj_of(item, where)
        report_type = integer(entry, "reportType", where, 0, 7)
        if report_type not in REPORT_TYPES or ReportType(report_type) in by_type:
            raise WireError(f"{where}.reportType: {report_type} is not a diagnosis report type or is listed twice")
        key = parse_submission_key({"variant": obj.get("variant"), "n": entry.get("n"), "e": entry.get("e")})
        by_type[ReportType(report_type)] = key.public_key
    if set(by_type) != REPORT_TYPES:
        raise WireError(f"body.keys: expected one key for each report type {sorted(int(t) for t in REPORT_TYPES)}")
    if len({pk.key_size for pk in by_type.values()}) != 1:
        raise WireError("body.keys: the keys' moduli differ in length (a request's size would tell its type)")
    return SubmissionKeys(by_type)


@dataclass(frozen=True)
class TokenRequest:
    """``{"tan": …, "reportType": …, "blinded": [...]}``, or ``{"fake": true, …}`` (dummy traffic). The
    report type says which key the tokens were blinded under; the backend signs a TAN's with the key of the
    TAN's own type and refuses a request that names another (absent: a confirmed test, the only key an
    older agent knew)."""

    tan: str | None
    blinded: tuple[bytes, ...]
    report_type: ReportType = ReportType.CONFIRMED_TEST


def token_request_batch_body(
    tan: str | None, blinded: Sequence[bytes], report_type: ReportType = ReportType.CONFIRMED_TEST
) -> dict[str, Any]:
    head: dict[str, Any] = {"fake": True} if tan is None else {"tan": tan}
    return {**head, "reportType": int(report_type), "blinded": [b64(b) for b in blinded]}


PADDED_REQUEST_BYTES = 1024
"""TAN exchanges and token requests are padded to a multiple of this, so a dummy one (``"fake": true``
and no TAN) is as long on the wire as a real one."""


def token_request_batch_bytes(tan: str | None, blinded: Sequence[bytes], report_type: ReportType) -> bytes:
    return padded_json(token_request_batch_body(tan, blinded, report_type), PADDED_REQUEST_BYTES)


def parse_token_request_batch(body: object, modulus_len: int) -> TokenRequest:
    obj = obj_of(body, "body")
    fake = boolean(obj, "fake", "body", default=False)
    tan = None if fake else string(obj, "tan", "body", 64)
    items = listed(obj, "blinded", "body")
    if not items or len(items) % SUBMISSION_TOKEN_BATCH or len(items) > MAX_SUBMISSION_TOKENS:
        raise WireError(f"body.blinded: a multiple of {SUBMISSION_TOKEN_BATCH}, at most {MAX_SUBMISSION_TOKENS}")
    report_type = integer(obj, "reportType", "body", 0, 7, default=int(ReportType.CONFIRMED_TEST))
    if report_type not in REPORT_TYPES:
        raise WireError(f"body.reportType: {report_type} is not a diagnosis report type")
    blinded = tuple(unb64(b, f"body.blinded[{i}]", modulus_len) for i, b in enumerate(items))
    return TokenRequest(tan, blinded, ReportType(report_type))


@dataclass(frozen=True)
class TokenGrant:
    """The answer to a token request: one blind signature per blinded token, and what the TAN carried."""

    blind_signatures: tuple[bytes, ...]
    grant: TanGrant


def blind_signatures_bytes(signatures: Sequence[bytes], grant: TanGrant) -> bytes:
    """Padded like the request, so a dummy request's answer (no onset) is as long as a real one's."""
    body = {"blindSignatures": [b64(s) for s in signatures], **tan_grant_body(grant)}
    return padded_json(body, PADDED_REQUEST_BYTES)


def parse_blind_signatures(body: object, count: int, modulus_len: int) -> TokenGrant:
    obj = obj_of(body, "body")
    items = listed(obj, "blindSignatures", "body")
    if len(items) != count:
        raise WireError(f"body.blindSignatures: expected {count}, got {len(items)}")
    signatures = tuple(unb64(s, f"body.blindSignatures[{i}]", modulus_len) for i, s in enumerate(items))
    return TokenGrant(signatures, parse_tan_grant(obj))


@dataclass(frozen=True)
class Submission:
    """One contact (``contact`` None: a padding or dummy submission, stored nowhere) under one token:
    the prepared token message and its RSA blind signature, unlinkable to the TAN that bought it."""

    token: bytes
    signature: bytes
    contact: ReportedContact | None


def submission_receipt_body() -> dict[str, Any]:
    """The answer to one submission: filed (or, for padding, taken and dropped: the same answer)."""
    return {"status": "accepted"}


def parse_submission_receipt(body: object) -> None:
    if obj_of(body, "body").get("status") != "accepted":
        raise WireError('body.status: expected "accepted"')


def padded_json(body: dict[str, Any], block: int) -> bytes:
    """``body`` as compact JSON with a ``padding`` field that brings it to a multiple of ``block`` bytes
    (sent as these exact bytes: a real request and its dummy then have the same length on the wire)."""
    body = {**body, "padding": ""}
    size = len(json.dumps(body, separators=(",", ":")))
    body["padding"] = "=" * (-(-size // block) * block - size)
    return json.dumps(body, separators=(",", ":")).encode()


def submission_bytes(s: Submission) -> bytes:
    """The submission padded to a multiple of ``SUBMISSION_BODY_BYTES``, whether it carries a contact
    or not."""
    body: dict[str, Any] = {
        "token": b64(s.token),
        "signature": b64(s.signature),
        "contact": None if s.contact is None else contact_body(s.contact),
    }
    return padded_json(body, SUBMISSION_BODY_BYTES)


def parse_submission(body: object, modulus_len: int) -> Submission:
    obj = obj_of(body, "body")
    token = unb64(obj.get("token"), "body.token", blind_rsa.PREFIX_LEN + TOKEN_MESSAGE_LEN)
    signature = unb64(obj.get("signature"), "body.signature", modulus_len)
    raw = obj.get("contact")
    contact = None if raw is None else parse_contacts({"contacts": [raw]}, 1)[0]
    return Submission(token, signature, contact)
