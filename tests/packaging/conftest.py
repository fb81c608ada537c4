"""The packaging tests drive devices the way the sync tests do, with the same backend harness helpers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
