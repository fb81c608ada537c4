"""The real-BlueZ tier: these tests run inside the VM of hw/vm/run, next to a real bluetoothd.

Run them with `hw/vm/run python -m pytest -m bluez`. Anywhere else they are skipped with that reason.
"""

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/bluez/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.bluez)
            if not os.environ.get("PROXITRACE_VM"):
                item.add_marker(pytest.mark.skip(reason="needs a real bluetoothd: hw/vm/run python -m pytest -m bluez"))


@pytest.fixture(scope="session")
def vm_adapters() -> list[str]:
    return os.environ.get("PROXITRACE_VM_ADAPTERS", "").split()
