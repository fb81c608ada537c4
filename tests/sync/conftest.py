"""The sync tests run devices against the same real backend harness as the server tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from backend_fixtures import clock, http, running, signing_key

__all__ = ["clock", "http", "running", "signing_key"]
