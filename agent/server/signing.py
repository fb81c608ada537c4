"""The backend's signing key at work: GAEN export files, ``Signature`` headers of lists and of answers
(``agent.protocol.export``, ``agent.protocol.jws``, ``agent.protocol.answers``), with the key id, version,
region and expiry from the config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from agent.protocol import export, jws
from agent.schemes.published import PublishedKey
from agent.server.config import BackendConfig

ISSUER = "proxitrace"


class KeySigner:
    """``ListSigner`` over one ECDSA P-256 private key."""

    def __init__(self, config: BackendConfig, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self._region = config.server.region
        self._ttl = config.signing.response_ttl_seconds
        self._info = export.SignatureInfo(config.signing.key_id, config.signing.key_version)

    def export(self, keys: Sequence[PublishedKey], start: int, end: int) -> bytes:
        return export.build_export(
            keys,
            start=start,
            end=end,
            region=self._region,
            batch_num=1,
            batch_size=1,
            signature_info=self._info,
            private_key=self._key,
        )

    def signature(self, body: bytes, now: float, claims: Mapping[str, str]) -> str:
        return jws.sign_response(body, self._key, now=now, ttl=self._ttl, issuer=ISSUER, extra_claims=claims)

    def answer(self, body: bytes, now: float, claims: Mapping[str, str]) -> str:
        """The ``Signature`` of an answer a device acts on (``agent.protocol.answers``): bound to its
        request by ``claims``, valid as long as a list's."""
        return jws.sign_response(body, self._key, now=now, ttl=self._ttl, issuer=ISSUER, extra_claims=claims)
