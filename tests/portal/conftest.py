"""The portal tests: unit tests over a real SQLite store and a real backend on 127.0.0.1, and the browser
tier (real headless Chromium)."""

from support.backend_fixtures import clock, http, signing_key
from support.browser import browser, screenshots

__all__ = ["browser", "clock", "http", "screenshots", "signing_key"]
