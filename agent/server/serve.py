"""Running the backend as a service: build it from its config, listen, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable

from aiohttp import web

from agent import risk, signing_keys
from agent.clock import Clock, clock_from_spec
from agent.configfile import ConfigError
from agent.server.app import ACCESS_LOG_FORMAT, Backend, create_app, create_portal_app, open_backend
from agent.server.config import BackendConfig
from agent.server.ratelimit import new_secret
from agent.server.scoring import ServerRiskScorer
from agent.server.signing import KeySigner

log = logging.getLogger(__name__)


def configured_backend(
    config: BackendConfig, clock: Clock | None = None, limiter_secret: bytes | None = None
) -> Backend:
    """The backend the config describes: its store, signing key, risk model and clock; ``limiter_secret``
    as ``open_backend`` takes it (the workers of one service share one)."""
    path = config.signing_key_path
    if not path.exists():
        raise ConfigError(f"signing.private_key: no signing key at {path}; run `proxitrace backend keygen` first")
    try:
        private_key = signing_keys.load_private_key(path)
    except signing_keys.SigningKeyError as exc:
        raise ConfigError(f"signing.private_key: {exc.reason}") from None
    try:
        the_clock = clock or clock_from_spec(config.server.clock)
    except ValueError as exc:
        raise ConfigError(f"server.clock: {exc}") from None
    scorer = ServerRiskScorer(risk.RiskSettings.from_dict(config.risk))
    return open_backend(config, the_clock, KeySigner(config, private_key), scorer, limiter_secret=limiter_secret)


def tls_context(config: BackendConfig) -> ssl.SSLContext | None:
    """The server side of TLS from ``[server] tls_cert_file``/``tls_key_file``; None serves plain HTTP.
    TLS 1.2 at least (Python's default server context already refuses older versions and weak ciphers)."""
    server = config.server
    if not server.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"server.tls_cert_file: cannot load {server.tls_cert_file} with its key: {exc}") from None
    return context


async def serve(
    backend: Backend,
    host: str,
    port: int,
    on_ready: Callable[[int], None] | None = None,
    on_portal_ready: Callable[[str, int], None] | None = None,
    tls: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    with_portal: bool = True,
) -> None:
    """Serve until SIGTERM or SIGINT (HTTPS with ``tls``); ``on_ready(port)`` once listening (port 0 picks a
    free one). With ``[portal] host`` set, the portal gets a listener of its own and ``on_portal_ready(host, port)``.
    A worker of several (``serve_workers``) accepts on the shared ``sock``; only one of them has the portal's
    listener (``with_portal``)."""
    runner = web.AppRunner(create_app(backend), access_log_format=ACCESS_LOG_FORMAT, handle_signals=False)
    await runner.setup()
    portal = backend.config.portal
    portal_runner: web.AppRunner | None = None
    if portal.enabled and portal.host and with_portal:
        portal_runner = web.AppRunner(
            create_portal_app(backend), access_log_format=ACCESS_LOG_FORMAT, handle_signals=False
        )
        await portal_runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if sock is None:
            site: web.BaseSite = web.TCPSite(runner, host, port, shutdown_timeout=5.0, ssl_context=tls)
        else:
            site = web.SockSite(runner, sock, shutdown_timeout=5.0, ssl_context=tls)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("backend listening on %s:%d", host, bound)
        if on_ready is not None:
            on_ready(bound)
        if portal_runner is not None:
            await web.TCPSite(portal_runner, portal.host, portal.port, shutdown_timeout=5.0).start()
            portal_port = portal_runner.addresses[0][1] if portal_runner.addresses else portal.port
            log.info("portal listening on %s:%d", portal.host, portal_port)
            if on_portal_ready is not None:
                on_portal_ready(portal.host, portal_port)
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if portal_runner is not None:
            await portal_runner.cleanup()
        await runner.cleanup()


def serve_workers(
    config: BackendConfig,
    host: str,
    port: int,
    workers: int,
    on_ready: Callable[[int], None],
    tls: ssl.SSLContext | None = None,
) -> int:
    """Serve with ``workers`` processes sharing one PostgreSQL database until SIGTERM or SIGINT; the exit
    status. The parent binds the listening socket once and forks the workers, which all accept on it (the
    kernel hands each connection to one of them), so no worker can fail to bind and a restart keeps the
    port. What must hold across workers is in the database: single-use codes are spent by conditional
    ``UPDATE``s, status polls counted the same way, lists published and the federation outbox delivered
    under advisory locks, wrong guesses counted in rows under keys made from one limiter secret, drawn
    here before the fork so that every worker holds the same one (each drawing its own would count
    apart: N workers, N times the guesses)."""
    limiter_secret = new_secret()
    sock = socket.create_server((host, port), backlog=1024)
    children: list[int] = []
    for number in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own backend, connections and event loop
            status = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops workers with SIGTERM
                backend = configured_backend(config, limiter_secret=limiter_secret)
                asyncio.run(serve(backend, host, port, tls=tls, sock=sock, with_portal=number == 0))
            except BaseException:
                log.exception("worker %d failed", number)
                status = 1
            finally:
                os._exit(status)
        children.append(pid)
    bound = sock.getsockname()[1]
    sock.close()
    log.info("backend listening on %s:%d with %d workers", host, bound, workers)
    on_ready(bound)
    return _supervise(children)


def _supervise(children: list[int]) -> int:
    """Wait for the workers; SIGTERM or SIGINT stops them all, and so does one worker ending (systemd then
    restarts the whole service rather than leave it short of workers). The exit status: 0 for a requested
    stop, else that of the worker that ended."""
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    status = 0
    alive = set(children)
    while alive:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        alive.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            log.error("a worker ended (status %d); stopping the others", code)
            status = code or 1
            stop(signal.SIGTERM, None)
    return status
