"""Real headless Chromium for the portal's browser tests (Debian's ``chromium`` and ``chromium-driver``),
driven by Selenium; nothing is downloaded.

Without the browser the tests fail in CI (``CI=true``) and are skipped elsewhere with the reason.
Screenshots go to ``$PROXITRACE_SCREENSHOTS`` (default: a fresh temporary directory, printed).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT_ENV = "PROXITRACE_SCREENSHOTS"
# Root in a container with no network: no sandbox, no GPU, nothing that phones home.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
)


def need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() and os.access(p, os.X_OK))]
    if not missing:
        return
    reason = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (see README's test command)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    need_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for a browser online
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations are reported there
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    chosen = os.environ.get(SCREENSHOT_ENV)
    folder = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="proxitrace-portal-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nportal screenshots: {folder}")
    return folder
