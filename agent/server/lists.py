"""The published lists (decentralized models' read side): signed export files per release bucket.

Two views of the same keys:
- a folder per scheme with one signed GAEN export zip per closed release bucket and an ``index.txt``
  listing them, laid out as Google's exposure-notifications key server publishes, so nginx or a CDN can
  serve it and a plain GAEN client can follow it;
- the DP-3T v2 API, ``GET /v2/<scheme>/exposed?lastKeyBundleTag=…``: one signed zip with every key
  released after the tag the agent sent, a ``x-key-bundle-tag`` to send next time, and a ``Signature``
  JWS binding the body, that tag and an expiry, so an old response cannot be replayed as new.

Only closed buckets are ever served, and a key's bucket is never earlier than the end of its own day
(see ``buckets``), so no list carries an ID that is still on the air.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.clock import Clock
from agent.protocol import wire
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey
from agent.server import buckets
from agent.server.config import BackendConfig
from agent.server.db import ServerStore

log = logging.getLogger(__name__)
INDEX_FILE = "index.txt"
DAY_MS = 86_400_000
PUBLISH_LOCK = 0x70726F78_7075626C  # the advisory lock one list publisher holds at a time


class ListSigner(Protocol):
    """What the backend needs from the signing key: a signed export zip, a list's response signature and a
    signed answer (``agent.protocol.answers``)."""

    def export(self, keys: Sequence[PublishedKey], start: int, end: int) -> bytes: ...

    def signature(self, body: bytes, now: float, claims: Mapping[str, str]) -> str: ...

    def answer(self, body: bytes, now: float, claims: Mapping[str, str]) -> str: ...


@dataclass(frozen=True)
class ListResponse:
    """``body`` empty means 204 (nothing released after the tag)."""

    body: bytes
    tag: int
    etag: str
    signature: str
    max_age: int


def export_name(tag_ms: int, bucket_seconds: int) -> str:
    end = tag_ms // 1000
    return f"{end - bucket_seconds}-{end}-00001.zip"


class Lists:
    def __init__(self, config: BackendConfig, clock: Clock, store: ServerStore, signer: ListSigner) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._signer = signer
        self._bucket = config.lists.bucket_seconds
        self._cache_tag = -1
        self._cache: dict[tuple[SchemeName, int], tuple[bytes, str]] = {}
        # One build at a time: when a bucket closes every pull misses the cache at once, and each building the
        # same export (a national list: seconds of work) multiplied the work by the pulls waiting.
        self._building = threading.Lock()
        self._published_tag = -1

    def _oldest_tag(self, current: int) -> int:
        return max(0, current - (self._config.lists.retention_days + 1) * DAY_MS)

    def exposed(self, scheme: SchemeName, last_tag: int | None) -> ListResponse:
        now = self._clock.now()
        current = buckets.current_tag_ms(now, self._bucket)
        if current != self._published_tag:
            try:
                self.publish()
            except OSError:  # the API serves from the store; the folder catches up at the next bucket
                log.exception("writing the export folder failed")
        after = buckets.normalise_tag_ms(last_tag or 0, self._bucket)
        after = min(max(after, self._oldest_tag(current)), current)
        if current != self._cache_tag:
            self._cache.clear()
            self._cache_tag = current
        cached = self._cache.get((scheme, after))
        if cached is None:
            with self._building:
                cached = self._cache.get((scheme, after))  # built by the pull this one waited for
                if cached is None:
                    keys = self._store.released_keys(scheme, after, current)
                    body = self._signer.export(keys, after // 1000, current // 1000) if keys else b""
                    cached = self._cache[(scheme, after)] = (body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
        body, etag = cached
        claims = {"key-bundle-tag": str(current), "scheme": scheme.value}
        return ListResponse(
            body=body,
            tag=current,
            etag=etag,
            signature=self._signer.signature(body, now, claims),
            max_age=max(0, current // 1000 + self._bucket - int(now)),
        )

    def publish(self) -> int:
        """Write the export file of every closed bucket not on disk yet, drop files past retention and
        rewrite each index; the number of files written. Idempotent: a closed bucket never changes.
        One publisher at a time across threads and workers (an advisory lock on the database); the one
        that waited then finds the files written."""
        with self._store.database.advisory_lock(PUBLISH_LOCK):
            return self._publish()

    def _publish(self) -> int:
        now = self._clock.now()
        current = buckets.current_tag_ms(now, self._bucket)
        oldest = self._oldest_tag(current)
        written = 0
        for scheme in wire.KEY_SCHEMES:
            folder = self._config.export_dir / scheme.value
            folder.mkdir(parents=True, exist_ok=True, mode=0o755)
            for tag in self._store.release_tags(scheme, oldest, current):
                path = folder / export_name(tag, self._bucket)
                if not path.exists():
                    keys = self._store.released_keys(scheme, tag - 1, tag)
                    _write_atomic(path, self._signer.export(keys, tag // 1000 - self._bucket, tag // 1000))
                    written += 1
            names = []
            for path in sorted(folder.glob("*-*-00001.zip")):
                if int(path.name.split("-")[1]) * 1000 <= oldest:
                    path.unlink()
                else:
                    names.append(f"{scheme.value}/{path.name}")
            index = "".join(f"{n}\n" for n in names).encode()
            index_path = folder / INDEX_FILE
            if not index_path.exists() or index_path.read_bytes() != index:
                _write_atomic(index_path, index)
        self._published_tag = current
        if written:
            log.info("published %d export file(s) up to bucket %d", written, current)
        return written


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers (a web server, a CDN sync) see the old file or the new one, never half of one. Exports are
    public: world-readable so a separate web server user can serve them."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
