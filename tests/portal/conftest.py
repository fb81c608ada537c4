"""The portal tests: unit tests over a real SQLite store and a real backend on 127.0.0.1, and the browser
tier (real headless Chromium)."""

from support.backend_fixtures import backend_engine, clock, http, postgres_cluster, pytest_generate_tests, signing_key
from support.browser import browser, screenshots

__all__ = [
    "backend_engine",
    "browser",
    "clock",
    "http",
    "postgres_cluster",
    "pytest_generate_tests",
    "screenshots",
    "signing_key",
]
