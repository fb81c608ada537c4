"""The portal tests: unit tests over a real SQLite store and a real backend on 127.0.0.1, and the browser
tier (real headless Chromium)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from backend_fixtures import clock, http, signing_key
from browser import browser, screenshots

__all__ = ["browser", "clock", "http", "screenshots", "signing_key"]
