"""Matching a streamed export over several processes: the parent reads, the workers parse and match.

Matching is CPU-bound pure Python (a few microseconds per key); a national list of over a million keys
takes seconds on one core, so the keys are split over processes. The parent only frames export.bin into
``KeyChunk``s (bytes, cheap to send); each worker decodes its chunks itself and matches them against the
sightings index, and sends back the few matches. At most ``IN_FLIGHT`` chunks per worker are queued, so
memory stays at a few chunks whatever the list's size.

How the index reaches the workers is the ``start_method``: with "fork" the workers share the parent's
index copy-on-write (free, and what ``proxitrace match`` and the benchmark use); "spawn" and
"forkserver" start clean interpreters, which is safe from a threaded parent but costs an interpreter
start and an index rebuilt from the pickled IDs per worker (``tests/bench/bench_national.py``
measures both).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Literal

from agent.matching import Expander, Hit, SightingIndex, dp3t_hits, gaen_hits
from agent.protocol.export import ExportError, ExportSummary, KeyChunk, parse_key_table
from agent.schemes.base import SchemeName

StartMethod = Literal["fork", "forkserver", "spawn"]
IN_FLIGHT = 2
MIN_KEYS_PER_WORKER = 50_000
"""A worker is worth starting for this many keys: a spawned or fork-server worker costs about 0.3 s of
CPU to start and rebuild its index (``tests/bench/bench_national.py``), what matching ~50 000 keys in
this process costs; smaller lists (every test's, a pilot's) are matched without any."""


def worker_count(keys: int, workers: int) -> int:
    """How many of ``workers`` processes a list of ``keys`` keys is matched over (1: in this one)."""
    return max(1, min(workers, keys // MIN_KEYS_PER_WORKER))


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a systemd unit or a container may
    narrow): what a ``match_workers`` setting of 0 means."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class ChunkHits:
    """What matching a list's chunks found, and over how many processes it really ran (the workers that
    matched at least one chunk; 1 when matched in the calling process)."""

    hits: list[Hit]
    processes: int


@dataclass(frozen=True)
class ChunkMatcher:
    """Everything a worker needs to match one chunk: pure, so the same object runs in-process too."""

    scheme: SchemeName
    summary: ExportSummary
    today: int

    def __call__(self, chunk: KeyChunk, index: SightingIndex, expander: Expander) -> list[Hit]:
        table = parse_key_table(chunk, self.summary)  # revised keys are checked like the others ...
        if chunk.revised or not index:
            return []  # ... but not matched: they replace keys published before
        if self.scheme is SchemeName.GAEN:
            return gaen_hits(table, index, first_position=chunk.first, expander=expander)
        if self.scheme is SchemeName.DP3T:
            return dp3t_hits(table, index, today=self.today, first_position=chunk.first, expander=expander)
        raise ValueError(f"{self.scheme} lists are not matched on the device")


def match_chunks(
    matcher: ChunkMatcher,
    chunks: Iterable[KeyChunk],
    index: SightingIndex,
    ids: Iterable[bytes] = (),
    workers: int = 1,
    start_method: StartMethod = "fork",
    progress: Callable[[int], None] | None = None,
) -> ChunkHits:
    """All hits of all chunks (``matching.resolve`` turns them into matches), over ``workers``
    processes (in this one when ``workers`` is 1).

    ``ids`` are what ``index`` was built from; only "spawn"/"forkserver" workers need them, to rebuild
    the index. Raises ``ExportError`` if any chunk is refused (by any worker), and then returns nothing:
    a refused list yields no matches.
    """
    if workers <= 1:
        found: list[Hit] = []
        with Expander() as expander:
            for chunk in chunks:
                found.extend(matcher(chunk, index, expander))
                if progress is not None:
                    progress(_keys_in(chunk))
        return ChunkHits(found, 1)
    with _Pool(matcher, index, tuple(ids) if start_method != "fork" else (), workers, start_method) as pool:
        return pool.run(chunks, progress)


def _keys_in(chunk: KeyChunk) -> int:
    return 0 if chunk.revised else chunk.count


@dataclass(frozen=True)
class _Worker:
    matcher: ChunkMatcher
    index: SightingIndex | None
    ids: tuple[bytes, ...]

    def serve(self, conn: Connection) -> None:
        index = self.index if self.index is not None else SightingIndex((), self.ids)
        with Expander() as expander:
            while (chunk := conn.recv()) is not None:
                try:
                    conn.send(("ok", self.matcher(chunk, index, expander), _keys_in(chunk), os.getpid()))
                except ExportError as exc:
                    conn.send(("refused", exc.reason, 0, os.getpid()))
        conn.close()


class _Pool:
    """Worker processes, each with its own pipe; the parent keeps every worker at most IN_FLIGHT chunks
    ahead, so a slow worker never lets chunks pile up in memory."""

    def __init__(
        self,
        matcher: ChunkMatcher,
        index: SightingIndex,
        ids: tuple[bytes, ...],
        workers: int,
        start_method: StartMethod,
    ) -> None:
        ctx = multiprocessing.get_context(start_method)
        worker = _Worker(matcher, index if start_method == "fork" else None, ids)
        self._conns: list[Connection] = []
        self._procs = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker.serve, args=(child,), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._in_flight = dict.fromkeys(range(workers), 0)
        self._matched_in: set[int] = set()

    def run(self, chunks: Iterable[KeyChunk], progress: Callable[[int], None] | None) -> ChunkHits:
        found: list[Hit] = []
        refusal: str | None = None
        for chunk in chunks:
            while refusal is None and min(self._in_flight.values()) >= IN_FLIGHT:
                refusal = self._collect(found, progress)
            if refusal is not None:
                break
            w = min(self._in_flight, key=self._in_flight.__getitem__)
            self._conns[w].send(chunk)
            self._in_flight[w] += 1
        while refusal is None and any(self._in_flight.values()):
            refusal = self._collect(found, progress)
        if refusal is not None:
            raise ExportError(refusal)
        return ChunkHits(found, len(self._matched_in))

    def _collect(self, found: list[Hit], progress: Callable[[int], None] | None) -> str | None:
        busy = [self._conns[w] for w, n in self._in_flight.items() if n]
        for conn in wait(busy):
            assert isinstance(conn, Connection)
            w = self._conns.index(conn)
            try:
                status, value, keys, pid = conn.recv()
            except EOFError:
                raise RuntimeError("a matching worker died (its error is on stderr)") from None
            self._in_flight[w] -= 1
            self._matched_in.add(pid)
            if status == "refused":
                return str(value)
            found.extend(value)
            if progress is not None and keys:
                progress(keys)
        return None

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        for conn, proc in zip(self._conns, self._procs, strict=True):
            if proc.is_alive() and not any(self._in_flight.values()):
                try:
                    conn.send(None)
                except (BrokenPipeError, OSError):
                    proc.terminate()
            else:
                proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
