"""The portal tests: unit tests over a real SQLite store and a real backend on 127.0.0.1 (the backend's
fixtures come from support.backend_fixtures, registered in tests/conftest.py), and the browser tier (real
headless Chromium)."""

from support.browser import browser, screenshots

__all__ = ["browser", "screenshots"]
