"""How an EBID report leaves the device: as separate submissions the backend cannot tie together.

Why each step: the TAN buys blind-signed tokens (RFC 9474), so no token can be tied to the TAN or to
another token; their number is padded to a multiple of ``wire.SUBMISSION_TOKEN_BATCH`` and every token
is spent (unused ones on padding submissions without a contact), so neither the request nor the number
of submissions tells how many contacts there were; the order is shuffled and the sending times drawn
uniformly over ``spread_seconds``, so neither order nor rhythm groups them; each goes on its own
connection with a body padded to a fixed size. This module is pure: the plan is made here, sent by the
sync service.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from agent.protocol import blind_rsa, wire


@dataclass(frozen=True)
class PendingToken:
    """A prepared token message, blinded, with the inverse that will unblind its signature."""

    prepared: bytes
    blinded: blind_rsa.Blinded


@dataclass(frozen=True)
class BoughtTokens:
    """(token, signature) pairs a TAN bought, and what the TAN carried (the officer's onset, report type)."""

    tokens: tuple[tuple[bytes, bytes], ...]
    grant: wire.TanGrant


@dataclass(frozen=True)
class PlannedSubmission:
    """Send ``body`` ``at`` seconds after the start of the report."""

    at: float
    body: bytes


def token_count(contacts: int) -> int:
    batch = wire.SUBMISSION_TOKEN_BATCH
    return batch * max(1, -(-contacts // batch))


def new_tokens(pk: rsa.RSAPublicKey, count: int) -> list[PendingToken]:
    out = []
    for _ in range(count):
        prepared = blind_rsa.prepare(secrets.token_bytes(wire.TOKEN_MESSAGE_LEN))
        out.append(PendingToken(prepared, blind_rsa.blind(pk, prepared)))
    return out


def finalize_tokens(
    pk: rsa.RSAPublicKey, pending: Sequence[PendingToken], blind_sigs: Sequence[bytes]
) -> list[tuple[bytes, bytes]]:
    """(token, signature) pairs; ``BlindSignatureError`` when the backend signed anything wrongly."""
    return [
        (p.prepared, blind_rsa.finalize(pk, p.prepared, s, p.blinded.inv))
        for p, s in zip(pending, blind_sigs, strict=True)
    ]


def plan(
    contacts: Sequence[wire.ReportedContact],
    tokens: Sequence[tuple[bytes, bytes]],
    spread_seconds: float,
    rng: random.Random,
) -> list[PlannedSubmission]:
    """One submission per token: the contacts and padding (no contact) shuffled, at sorted uniform times."""
    if len(tokens) < len(contacts):
        raise ValueError("fewer tokens than contacts")
    items: list[wire.ReportedContact | None] = [*contacts, *[None] * (len(tokens) - len(contacts))]
    rng.shuffle(items)
    times = sorted(rng.uniform(0.0, spread_seconds) for _ in items)
    return [
        PlannedSubmission(at, wire.submission_bytes(wire.Submission(token, sig, item)))
        for at, (token, sig), item in zip(times, tokens, items, strict=True)
    ]


def dummy_submission(modulus_len: int) -> bytes:
    """A submission with no contact and no bought token, as long as a real one (dummy traffic)."""
    k = modulus_len
    return wire.submission_bytes(
        wire.Submission(
            secrets.token_bytes(blind_rsa.PREFIX_LEN + wire.TOKEN_MESSAGE_LEN), secrets.token_bytes(k), None
        )
    )
