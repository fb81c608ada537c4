"""Whether a list or an answer from the backend may be used: a pure decision on what the HTTP answer said.

A list from our backend is matched only when its ``Signature`` JWS is valid for the pinned key, covers
exactly the body, carries the bundle tag of the response and the scheme asked for, has not expired, and
the tag does not go backwards (an old list replayed as new is refused); and when the export inside is
signed by the same key. A plain GAEN key server's files need its own key, and its index may name only
relative ``.zip`` paths. Any other answer the device acts on (``verify_answer``) must carry a
``Signature`` by the same key over exactly its body, issued and not yet expired by the device clock within
``answers.CLOCK_TOLERANCE_SECONDS``, for the nonce this request sent and for this method and path.

A list is handed in as a seekable file (the body as the client spooled it to disk, or ``io.BytesIO``):
a national list is tens of megabytes, so it is hashed, verified and later matched from that file, never
held whole in memory. Nothing else here does I/O, so each refusal is tested by handing in bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric import ec

from agent.protocol import answers, export, jws, wire
from agent.schemes.base import SchemeName
from agent.sync.settings import KeyServer

BUNDLE_TAG_HEADER = "x-key-bundle-tag"
_INDEX_ENTRY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*\.zip$")
_HASH_READ_BYTES = 1024 * 1024


@dataclass(frozen=True)
class VerifiedList:
    """A list whose signatures checked out: safe to match, its keys read from its file chunk by chunk
    (each key is still checked as it is read: ``export.ExportError`` then, and nothing may be stored)."""

    scheme: SchemeName
    source: str
    export: export.StreamedExport

    @property
    def digest(self) -> str:
        """export.bin's SHA-256, which the store keeps so the same list is never matched twice."""
        return self.export.summary.export_sha256.hex()


@dataclass(frozen=True)
class VerifiedPull:
    """What one pull from our backend gave: verified lists (none on 204) and the tag to send next time."""

    lists: tuple[VerifiedList, ...]
    tag: int


@dataclass(frozen=True)
class Refusal:
    """Why a response must not be used; one line without keys or IDs."""

    reason: str


def verify_pull(
    scheme: SchemeName,
    status: int,
    headers: Mapping[str, str],
    body: BinaryIO,
    public_key: ec.EllipticCurvePublicKey,
    key_id: str,
    source: str,
    last_tag: int | None,
    now: float,
    processed_before: Callable[[BinaryIO], bool] | None = None,
) -> VerifiedPull | Refusal:
    """Check one ``/v2/<scheme>/exposed`` answer whose body is in the seekable file ``body``; ``source``
    names the backend in the stored results. A signed answer whose export file ``processed_before``
    recognises (``agent.exposure.processed_before``: by its export.sig) gives its tag and no list, without
    its export.bin being read: the answer's own signature is still checked, since it vouches for the tag."""
    tag_text = headers.get(BUNDLE_TAG_HEADER, "")
    if not (tag_text.isascii() and tag_text.isdigit() and len(tag_text) <= 16):
        return Refusal(f"{scheme} list: no valid {BUNDLE_TAG_HEADER} header")
    tag = int(tag_text)
    signature = headers.get("Signature")
    if not signature:
        return Refusal(f"{scheme} list: unsigned response (no Signature header)")
    try:
        claims = jws.verify_response_digest(_sha256_of(body), signature, public_key, now=now)
    except jws.SignatureError as exc:
        return Refusal(f"{scheme} list: Signature header refused: {exc.reason}")
    if claims.get("key-bundle-tag") != tag_text:
        return Refusal(f"{scheme} list: the bundle tag is not the one that was signed")
    if claims.get("scheme", scheme.value) != scheme.value:
        return Refusal(f"{scheme} list: signed for another scheme")
    if last_tag is not None and (tag < last_tag or (tag == last_tag and status == 200)):
        return Refusal(f"{scheme} list: replayed (bundle tag {tag} is not after the last processed {last_tag})")
    if status != 200 or (processed_before is not None and processed_before(body)):
        return VerifiedPull((), tag)
    try:
        content = export.verify_export_stream(body, {key_id: public_key}, now=now, key_length=wire.KEY_LEN[scheme])
    except export.ExportError as exc:
        return Refusal(f"{scheme} list: export refused: {exc.reason}")
    return VerifiedPull((VerifiedList(scheme, f"{source} {scheme.value} {tag}", content),), tag)


def _sha256_of(body: BinaryIO) -> bytes:
    body.seek(0)
    digest = hashlib.sha256()
    while data := body.read(_HASH_READ_BYTES):
        digest.update(data)
    return digest.digest()


def verify_answer(
    method: str,
    path: str,
    nonce: str,
    headers: Mapping[str, str],
    body: bytes,
    public_key: ec.EllipticCurvePublicKey,
    now: float,
) -> Refusal | None:
    """None when the answer to ``method path`` (sent with ``nonce``) is signed, fresh and bound to it."""
    signature = headers.get("Signature")
    if not signature:
        return Refusal("unsigned answer (no Signature header)")
    try:
        claims = jws.verify_response(body, signature, public_key, now=now, leeway=answers.CLOCK_TOLERANCE_SECONDS)
    except jws.SignatureError as exc:
        return Refusal(f"Signature refused: {exc.reason}")
    if "iat" not in claims:
        return Refusal("Signature has no iat claim")
    signed_nonce = claims.get("nonce")
    if not isinstance(signed_nonce, str) or not hmac.compare_digest(signed_nonce.encode(), nonce.encode()):
        return Refusal("signed for another request (nonce differs): replayed")
    if claims.get("request") != answers.request_claim(method, path):
        return Refusal("signed for another endpoint")
    return None


def index_entries(body: bytes) -> list[str] | Refusal:
    """The export files a key server's ``index.txt`` names, each a relative ``.zip`` path."""
    try:
        names = [line.strip() for line in body.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        return Refusal("key server index: not text")
    if any(not _INDEX_ENTRY.match(n) or ".." in n for n in names):
        return Refusal("key server index: an entry is not a relative .zip path")
    return names


def verify_key_server_file(name: str, data: BinaryIO, server: KeyServer, now: float) -> VerifiedList | Refusal:
    """A key server's export file (in the seekable file ``data``), verified with that server's key."""
    try:
        content = export.verify_export_stream(data, {server.key_id: server.public_key}, now=now)
    except export.ExportError as exc:
        return Refusal(f"key server file {name}: {exc.reason}")
    return VerifiedList(SchemeName.GAEN, f"{server.index_url} {name}", content)
