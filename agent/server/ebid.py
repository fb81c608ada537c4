"""The EBID model's server side, after ITU-T X.1152 Suppl. 38 and PEPP-PT/ROBERT (which call it "centralized").

- Registration costs a proof of work and an enrolment code from the operator (the stand-in for a CAPTCHA
  on a screenless wearable); it yields client credentials, and the server draws the device a random PUID
  that never leaves the server.
- The device trades its credentials for a short-lived access token and fetches EBIDs for the coming
  periods, EBID_t = AES-128(BK_t, PUID) with its ECC. BK_t is per period, random, kept here only.
- A diagnosed device trades its TAN for a batch of RSA blind-signed submission tokens (RFC 9474), then
  sends each EBID it received as a separate submission under one token, on its own connection, shuffled
  and spread over time. The backend sees a valid token but cannot tell which TAN bought it or which
  other submissions came from the same report; a spent token is remembered by its hash only. Each
  reception must fall inside the EBID's period ± tolerance (replay/relay bound); foreign ones are
  forwarded, own ones are decrypted to PUIDs and kept as that registration's exposure: per-pseudonym
  risk state with no report id and no report time.
- The device asks for its risk verdict a few times a day; the verdict comes from the same risk model as on
  devices, and an at-risk pseudonym is erased at once, so the device must register again.
- It does so without a person: every registration answer carries a blind signature (RFC 9474, under a
  key of its own) on a token the device blinded, its re-registration capability. Registering again with
  it (and a proof of work) spends it; the backend then sees a genuine capability it has never seen, keeps
  its hash so it works once, and cannot tell which registration it was issued to: nothing is stored when
  one is issued, and the blinded token it signed is unrelated to the token later spent. A capability is
  therefore not refused while its old registration is still live: checking that would need the very link
  between old and new pseudonym this avoids (what that costs is said at ``register``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent.clock import Clock, day_of, start_of_day
from agent.protocol import answers, blind_rsa, proof_of_work, wire
from agent.schemes import ebid
from agent.schemes.published import ReportType
from agent.server import codes
from agent.server.config import BackendConfig
from agent.server.db import Exposure, Payment, ServerStore, Spent
from agent.server.errors import ApiError, too_many
from agent.server.federation import Federation, forward_body, forwarded_report_type
from agent.server.ratelimit import FailureLimiter, Guess
from agent.server.uploads import WRONG_TANS, bearer_token, tan_grant

log = logging.getLogger(__name__)
MAX_CONTACTS = 100_000
SUBMISSION_KEY_BITS = 2048
SUBMISSION_KEY_META = {
    ReportType.CONFIRMED_TEST: "submission_key",
    ReportType.CONFIRMED_CLINICAL_DIAGNOSIS: "submission_key_clinical_diagnosis",
    ReportType.SELF_REPORT: "submission_key_self_report",
}
"""One blind-signing key per report type a TAN can carry (``wire.REPORT_TYPES``): a token carries its type
in the key that signed it and nothing else, so the type reaches scoring without a link to the TAN. The
confirmed-test key is the one a backend had before there were three, so its tokens keep their meaning."""
REREGISTRATION_KEY_META = "reregistration_key"
"""Its own key, not the submission key: a token signed for one purpose must be worthless for the other
(a capability spent as a submission token would file an exposure without a TAN)."""


@dataclass(frozen=True)
class ScoredRisk:
    """What the risk model made of one registration's exposures; the verdict sent back is built on it."""

    at_risk: bool
    explanation: dict[str, object]


RiskScorer = Callable[[Sequence[Exposure], float], ScoredRisk]


def issue_enrolment_codes(store: ServerStore, now: float, valid_seconds: int, count: int) -> tuple[list[str], float]:
    """New enrolment codes and their expiry (shared by the admin endpoint and the CLI). The expiry is the
    end of the UTC day the validity ends in: an exact expiry minus the validity is the issue time, which
    the first access token's time would match (the code given to a person would then name their pseudonym)."""
    if not 1 <= count <= 10_000:
        raise ApiError(400, "count: between 1 and 10000")
    if valid_seconds <= 0:
        raise ApiError(400, "validity must be positive")
    issued = [codes.new_code() for _ in range(count)]
    expires = start_of_day(day_of(now + valid_seconds) + 1)
    store.add_enrolment_codes((codes.code_hash(codes.normalise_code(c) or "") for c in issued), expires)
    log.info("%d enrolment code(s) issued", count)
    return issued, expires


class EbidBackend:
    def __init__(
        self,
        config: BackendConfig,
        clock: Clock,
        store: ServerStore,
        limiter: FailureLimiter,
        challenges: FailureLimiter,
        federation: Federation,
        federation_key: bytes,
        scorer: RiskScorer,
    ) -> None:
        self._config = config
        self._e = config.ebid
        self._clock = clock
        self._store = store
        self._limiter = limiter
        self._challenges = challenges
        self._federation = federation
        self._kg = federation_key
        self._score = scorer
        self._submission_signers: dict[ReportType, blind_rsa.BlindSigner] = {}
        self._reregistration_signer: blind_rsa.BlindSigner | None = None

    # ---- enrolment and registration ------------------------------------------------------------------

    def issue_enrolment_codes(self, count: int, valid_seconds: int | None = None) -> tuple[list[str], float]:
        valid = self._e.enrolment_valid_seconds if valid_seconds is None else valid_seconds
        return issue_enrolment_codes(self._store, self._clock.now(), valid, count)

    def challenge(self, address: str) -> wire.Challenge:
        """A challenge costs no credential, so each client address gets a few an hour (every request
        counts, not only failures) and the table holds at most ``max_open_challenges``."""
        self._challenges.count(address, "registration challenges from this address")
        now = self._clock.now()
        challenge = os.urandom(wire.CHALLENGE_LEN)
        expires = now + self._e.challenge_ttl_seconds
        if not self._store.add_challenge(challenge, expires, now, self._e.max_open_challenges):
            raise ApiError(503, "too many open registration challenges: try again later", {"Retry-After": "60"})
        return wire.Challenge(challenge, self._e.pow_difficulty, expires)

    def register(self, body: object, address: str) -> wire.ClientCredentials:
        """A new pseudonym, paid for by an enrolment code or a re-registration capability, and (when the
        device sent a blinded token) its own capability for next time.

        A capability is accepted whether or not the registration it came with is still live (the backend
        cannot know which one that was). The price: a device that keeps its registration and spends its
        capability holds two pseudonyms, and each new one brings a new capability, so one enrolment code
        can pay for a chain of pseudonyms, each costing a proof of work; the agent itself spends a
        capability only once its pseudonym is gone."""
        request = wire.parse_registration(body)
        challenge, nonce = request.challenge, request.nonce
        now = self._clock.now()
        with self._limiter.attempt(address, "wrong enrolment codes or capabilities from this address") as guess:
            if not self._store.challenge_valid(challenge, now):
                raise ApiError(403, "challenge unknown, used or expired: ask for a new one")
            if not proof_of_work.meets(challenge, nonce, self._e.pow_difficulty):
                raise ApiError(403, f"proof of work does not reach {self._e.pow_difficulty} leading zero bits")
            payment = self._payment(request, guess, now)
        key = self.reregistration_key()
        signature = None
        if request.blinded_capability is not None:
            if len(request.blinded_capability) != blind_rsa.modulus_len(key.public_key()):
                raise ApiError(400, f"body.blindedCapability: expected {blind_rsa.modulus_len(key.public_key())} bytes")
            try:
                signature = self._capability_signer().sign(request.blinded_capability)
            except blind_rsa.BlindSignatureError as exc:
                raise ApiError(400, f"body.blindedCapability: {exc}") from None
        client_id, secret = secrets.token_urlsafe(16), codes.new_token()
        puid = os.urandom(ebid.PUID_LEN)
        secret_hash = codes.code_hash(secret)
        if not self._store.register(challenge, payment, now, client_id, secret_hash, puid, request.tx_power):
            what = "enrolment code" if payment.code_hash is not None else "capability"
            raise ApiError(409, f"challenge or {what} was used by another request meanwhile")
        log.info("device registered%s", "" if payment.code_hash is not None else " again with its capability")
        return wire.ClientCredentials(
            client_id, secret, self._config.server.country_code, self._e.period_seconds, signature
        )

    def _payment(self, request: wire.Registration, guess: Guess, now: float) -> Payment:
        """What the registration spends, checked (a wrong one counts against the address, as a wrong code)."""
        if request.capability is not None:
            token, signature = request.capability.token, request.capability.signature
            if not blind_rsa.verify(self.reregistration_key().public_key(), token, signature):
                guess.wrong()
                raise ApiError(403, "capability: invalid signature")
            capability_hash = hashlib.sha256(token).digest()
            if self._store.capability_spent(capability_hash):
                guess.wrong()
                raise ApiError(403, "capability already used")
            return Payment(capability_hash=capability_hash)
        normal = codes.normalise_code(request.enrolment_code or "")
        why = self._store.enrolment_code(codes.code_hash(normal), now) if normal else None
        if normal is None or why is not None:
            guess.wrong()
            raise ApiError(403, f"enrolment code {why.value if why else 'unknown'}")
        return Payment(code_hash=codes.code_hash(normal))

    def access_token(self, body: object) -> wire.AccessToken:
        request = wire.parse_token_request(body)
        reg = self._store.registration_by_client(request.client_id)
        if reg is None or not hmac.compare_digest(reg.secret_hash, codes.code_hash(request.client_secret)):
            raise ApiError(401, "unknown client or wrong secret (a device found at risk must register again)")
        token = codes.new_token()
        expires = codes.rounded_expiry(
            self._clock.now() + self._e.access_token_ttl_seconds, codes.TOKEN_EXPIRY_BUCKET_SECONDS
        )
        self._store.add_access_token(codes.code_hash(token), reg.id, expires)
        self._store.seen(reg.id, day_of(self._clock.now()))
        return wire.AccessToken(token, expires)

    def registration_of(self, authorization: str | None) -> int:
        found = self._store.access_token(codes.code_hash(bearer_token(authorization)), self._clock.now())
        if found is None:
            raise ApiError(401, "access token unknown or expired", {"WWW-Authenticate": "Bearer"})
        return found

    # ---- EBIDs ---------------------------------------------------------------------------------------

    def ebids(self, registration_id: int, periods: int | None) -> ebid.EbidBatch:
        reg = self._store.registration(registration_id)
        if reg is None:
            raise ApiError(401, "registration erased: register again")
        count = self._e.batch_periods if periods is None else periods
        if not 1 <= count <= self._e.batch_periods:
            raise ApiError(400, f"periods: between 1 and {self._e.batch_periods}")
        first = ebid.period_of(self._clock.now(), self._e.period_seconds)
        wanted = list(range(first, first + count))
        bks = self._store.broadcast_keys(wanted, lambda: os.urandom(ebid.KEY_LEN))
        cc = self._config.server.country_code
        entries = []
        for p in wanted:
            e = ebid.make_ebid(bks[p], reg.puid)
            entries.append(ebid.EbidEntry(p, e, ebid.make_ecc(self._kg, e, cc)))
        return ebid.EbidBatch(self._e.period_seconds, tuple(entries))

    # ---- reports -------------------------------------------------------------------------------------

    def _check_periods(self, contacts: Sequence[wire.ReportedContact]) -> None:
        """Every reception inside its EBID's period ± tolerance (at most one period), and none after the
        report: a future-dated scan refuses the whole report, so it is counted nowhere. "After" allows
        the device clock's tolerance (``answers.CLOCK_TOLERANCE_SECONDS``), as signed answers do, and
        no more: a scan dated a period ahead used to pass and could pre-date exposures."""
        p, tol = self._e.period_seconds, self._e.tolerance_periods
        latest = self._clock.now() + answers.CLOCK_TOLERANCE_SECONDS
        for i, c in enumerate(contacts):
            lo, hi = (c.period - tol) * p, (c.period + 1 + tol) * p
            for t in (c.time, *(s.time for s in c.scans)):
                if not lo <= t < hi:
                    raise ApiError(
                        400, f"body.contacts[{i}]: received outside its EBID's period ± {tol} (replayed or relayed?)"
                    )
                if t > latest:
                    raise ApiError(400, f"body.contacts[{i}]: received in the future")

    def _own_exposures(
        self, contacts: Sequence[wire.ReportedContact], report_type: ReportType
    ) -> list[tuple[int, Exposure]]:
        bks = self._store.existing_broadcast_keys(c.period for c in contacts)
        puids = [
            (ebid.puid_of(bks[c.period], c.ebid), c) for c in contacts if c.period in bks
        ]  # an EBID of a period with no BK was never issued: it maps to nobody
        regs = self._store.registrations_by_puid(puid for puid, _ in puids)
        return [(regs[puid], Exposure(c.period, c.time, c.scans, report_type)) for puid, c in puids if puid in regs]

    def _split(
        self, contacts: Sequence[wire.ReportedContact]
    ) -> tuple[list[wire.ReportedContact], dict[int, list[wire.ReportedContact]]]:
        own_cc = self._config.server.country_code
        own: list[wire.ReportedContact] = []
        foreign: dict[int, list[wire.ReportedContact]] = defaultdict(list)
        for c in contacts:
            cc = own_cc if c.ecc is None else ebid.country_of(self._kg, c.ebid, c.ecc)
            if cc == own_cc:
                own.append(c)
            elif self._federation.peer(cc) is not None:
                foreign[cc].append(c)
        return own, foreign

    # ---- separate submissions under blind-signed tokens ----------------------------------------------

    def submission_key(self, report_type: ReportType = ReportType.CONFIRMED_TEST) -> rsa.RSAPrivateKey:
        """The RSA key that blind-signs submission tokens of ``report_type``, made on first use and kept in
        the store."""
        return self._submission_signer(report_type).key

    def _submission_signer(self, report_type: ReportType) -> blind_rsa.BlindSigner:
        """The signer of ``report_type``'s key, built once: it holds the key's state for signing (its
        EVP_PKEY in libcrypto), which costs more to make than a signature."""
        if report_type not in self._submission_signers:
            key = self._rsa_key(SUBMISSION_KEY_META[report_type])
            self._submission_signers[report_type] = blind_rsa.BlindSigner(key)
        return self._submission_signers[report_type]

    def reregistration_key(self) -> rsa.RSAPrivateKey:
        """The RSA key that blind-signs re-registration capabilities, made on first use and kept in the store."""
        return self._capability_signer().key

    def _capability_signer(self) -> blind_rsa.BlindSigner:
        """The signer of the re-registration key, built once (as ``_submission_signer``)."""
        if self._reregistration_signer is None:
            self._reregistration_signer = blind_rsa.BlindSigner(self._rsa_key(REREGISTRATION_KEY_META))
        return self._reregistration_signer

    def reregistration_public_key(self) -> wire.SubmissionKey:
        return wire.SubmissionKey(self.reregistration_key().public_key())

    def _rsa_key(self, meta_name: str) -> rsa.RSAPrivateKey:
        stored = self._store.meta(meta_name)
        if stored is None:
            fresh = rsa.generate_private_key(public_exponent=65537, key_size=SUBMISSION_KEY_BITS)
            pem = fresh.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            stored = self._store.meta_setdefault(meta_name, pem)
        key = serialization.load_pem_private_key(stored, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def submission_public_keys(self) -> wire.SubmissionKeys:
        return wire.SubmissionKeys({t: self.submission_key(t).public_key() for t in SUBMISSION_KEY_META})

    def redeem_for_tokens(self, body: object, address: str) -> tuple[wire.TokenRequest, wire.TanGrant]:
        """Check a token request and spend its TAN (a fake request, dummy traffic, spends nothing): the
        request and what the TAN carries to the device; ``sign_tokens`` then does the slow part off the
        event loop, with the key of the grant's report type: the TAN's own, never one the client chose. A
        request blinded for another type is refused before the TAN is spent (its tokens would not verify
        under the key the TAN allows, and the device learns the type from the TAN check first)."""
        request = wire.parse_token_request_batch(body, blind_rsa.modulus_len(self.submission_key().public_key()))
        if request.tan is None:
            return request, wire.TanGrant(report_type=request.report_type)
        with self._limiter.attempt(address, WRONG_TANS) as guess:
            normal = codes.normalise_code(request.tan)
            tan_hash = codes.code_hash(normal) if normal else None
            found = self._store.peek_tan(tan_hash, self._clock.now()) if tan_hash else Spent.UNKNOWN
            if not isinstance(found, Spent) and found.report_type != request.report_type:
                raise ApiError(
                    409,
                    f"body.reportType: the TAN is a {ReportType(found.report_type).name} report, the tokens were "
                    f"blinded for {request.report_type.name} (the TAN was not spent)",
                )
            spent = self._store.spend_tan(tan_hash, self._clock.now()) if tan_hash else Spent.UNKNOWN
            if isinstance(spent, Spent):
                guess.wrong()
                raise ApiError(403, f"TAN {spent.value}")
        return request, tan_grant(spent)

    def sign_tokens(self, request: wire.TokenRequest, grant: wire.TanGrant) -> list[bytes]:
        """One blind signature per blinded token, under the key of ``grant``'s report type (the TAN's). A
        fake request is signed too (so it takes as long) but answered with random bytes of the same length:
        a signature must never come without a TAN."""
        signer = self._submission_signer(grant.report_type)
        try:
            signed = [signer.sign(b) for b in request.blinded]
        except blind_rsa.BlindSignatureError as exc:
            raise ApiError(400, f"body.blinded: {exc}") from None
        if request.tan is None:
            return [os.urandom(len(s)) for s in signed]
        log.info("%d submission token(s) signed", len(signed))
        return signed

    def submit(self, body: object) -> None:
        """One contact under one unspent token; a submission without a contact (padding or dummy) is
        checked the same way when its token is genuine and stores nothing either way. The token is
        checked against every report type's key (all of them, so a dummy costs what a real one does) and
        the contact keeps the type of the key that signed it: a token bought under one type is that
        type's only."""
        keys = {t: self.submission_key(t).public_key() for t in SUBMISSION_KEY_META}
        submission = wire.parse_submission(body, blind_rsa.modulus_len(keys[ReportType.CONFIRMED_TEST]))
        verified = [t for t, pk in keys.items() if blind_rsa.verify(pk, submission.token, submission.signature)]
        genuine = bool(verified)
        if submission.contact is None and not genuine:
            return  # dummy traffic: no token was ever bought for it
        if not genuine:
            raise ApiError(401, "submission token: invalid signature")
        rows: list[tuple[int, Exposure]] = []
        forwards: list[tuple[int, bytes]] = []
        if submission.contact is not None:
            self._check_periods([submission.contact])
            own, foreign = self._split([submission.contact])
            rows = self._own_exposures(own, verified[0])
            forwards = [(cc, forward_body(cs, verified[0])) for cc, cs in foreign.items()]
        token_hash = hashlib.sha256(submission.token).digest()
        if not self._store.file_submission(token_hash, self._clock.now(), rows, forwards):
            raise ApiError(401, "submission token already used")
        if forwards:
            self._federation.wake()

    def accept_forward(self, origin: int, body: object) -> bool:
        """A peer's forward: only contacts that decode to this country count (no second hop)."""
        message_id = wire.required_str(body, "id", 64)
        contacts = wire.parse_contacts(body, MAX_CONTACTS)
        report_type = forwarded_report_type(body)
        self._check_periods(contacts)
        own, _ = self._split(contacts)
        source = f"{origin}:{message_id}"
        fresh = self._store.accept_forward(source, self._clock.now(), self._own_exposures(own, report_type))
        log.info("forward from country %d %s", origin, "stored" if fresh else "already seen")
        return fresh

    # ---- the risk verdict ----------------------------------------------------------------------------

    def risk_verdict(self, registration_id: int) -> wire.RiskVerdict:
        now = self._clock.now()
        day = day_of(now)
        left = self._store.count_status_poll(registration_id, day, self._e.status_polls_per_day)
        if left is None:
            raise too_many(start_of_day(day + 1) - now, "status requests today")
        reg = self._store.registration(registration_id)
        tx_power = None if reg is None else reg.tx_power
        scored = self._score(with_declared_tx_power(self._store.exposures_of(registration_id), tx_power), now)
        if scored.at_risk:
            self._store.erase_registration(registration_id)
            self._store.count("at_risk_verdicts", now)
            log.info("risk verdict: at risk; pseudonym erased")
        return wire.RiskVerdict(scored.at_risk, scored.explanation, left, must_register_again=scored.at_risk)


def with_declared_tx_power(exposures: Sequence[Exposure], tx_power: int | None) -> list[Exposure]:
    """The exposures of a registration with each assumed-TX-power scan corrected by the TX power the device
    declared at registration: the reporter measured against ``wire.EBID_REFERENCE_TX_POWER`` because the
    advert carries none, so attenuation = reported + (declared - reference). Undeclared (None): unchanged,
    and the scans stay flagged assumed so the verdict says so."""
    if tx_power is None:
        return list(exposures)
    shift = tx_power - wire.EBID_REFERENCE_TX_POWER

    def db(value: int) -> int:
        return min(255, max(0, value + shift))

    def corrected(scan: wire.ScanRecord) -> wire.ScanRecord:
        if not scan.assumed_tx_power:
            return scan
        return wire.ScanRecord(scan.time, db(scan.typical_attenuation), db(scan.min_attenuation), False)

    return [dataclasses.replace(e, scans=tuple(corrected(s) for s in e.scans)) for e in exposures]
