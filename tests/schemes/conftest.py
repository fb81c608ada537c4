import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads((DATA / "scheme_vectors.json").read_text())["vectors"]
