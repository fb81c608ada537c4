"""Without Chromium the browser tier fails in CI and skips elsewhere, saying what to install."""

from pathlib import Path

import pytest
from support import browser


def test_a_missing_browser_fails_in_ci_and_skips_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-chromium missing: apt-get install chromium chromium-driver"):
        browser.need_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-chromium missing"):
        browser.need_browser()
