"""Running the backend as a service: build it from its config, listen, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from agent import risk, signing_keys
from agent.clock import Clock, clock_from_spec
from agent.configfile import ConfigError
from agent.server.app import ACCESS_LOG_FORMAT, Backend, create_app, create_portal_app, open_backend
from agent.server.config import BackendConfig
from agent.server.scoring import ServerRiskScorer
from agent.server.signing import KeySigner

log = logging.getLogger(__name__)


def configured_backend(config: BackendConfig, clock: Clock | None = None) -> Backend:
    """The backend the config describes: its store, signing key, risk model and clock."""
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
    return open_backend(config, the_clock, KeySigner(config, private_key), scorer)


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
) -> None:
    """Serve until SIGTERM or SIGINT (HTTPS with ``tls``); ``on_ready(port)`` once listening (port 0 picks a
    free one). With ``[portal] host`` set, the portal gets a listener of its own and ``on_portal_ready(host, port)``."""
    runner = web.AppRunner(create_app(backend), access_log_format=ACCESS_LOG_FORMAT, handle_signals=False)
    await runner.setup()
    portal = backend.config.portal
    portal_runner: web.AppRunner | None = None
    if portal.enabled and portal.host:
        portal_runner = web.AppRunner(
            create_portal_app(backend), access_log_format=ACCESS_LOG_FORMAT, handle_signals=False
        )
        await portal_runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, shutdown_timeout=5.0, ssl_context=tls)
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
