"""The portal in real headless Chromium against `proxitrace backend serve` (portal on a listener of its
own), with a real agent reporting through `proxitrace report --tan`: log in with TOTP, issue a TAN with an
onset, read it off the page, report with it; revoke another and see the agent refused; CSRF and lockout
attempts fail; the dashboard counts the upload; hostile names and notes stay text. Screenshots of each page
go to the folder ``browser.screenshots`` prints."""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pyotp
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from agent.keys import KeyRing
from agent.schemes.base import SchemeName
from agent.store import Store

HOSTILE_NAME = "<img src=x onerror=alert(1)>Eve \"'&amp;"
HOSTILE_NOTE = '<script>alert("note")</script><b>bold</b>'


def proxitrace(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout)


class Pilot:
    """A backend as an operator runs it, its portal on another port, and an agent's config."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.toml = tmp / "backend.toml"
        self.toml.write_text(
            f'[server]\ndata_dir = "{tmp / "backend"}"\n'
            "[upload]\nmin_response_seconds = 0\n"
            '[portal]\nhost = "127.0.0.1"\nport = 0\nmax_failed_logins = 3\nfailure_delay_seconds = 0.2\n'
        )
        self.server: subprocess.Popen[str] | None = None
        self.api = self.portal = ""
        self.log_lines: list[str] = []

    def start(self) -> None:
        self.server = subprocess.Popen(
            [sys.executable, "-m", "agent", "backend", "serve", "--config", str(self.toml), "--port", "0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.server.stderr is not None
        for line in self.server.stderr:
            self.log_lines.append(line)
            if found := re.search(r"backend listening on (http://127\.0\.0\.1:\d+)", line):
                self.api = found[1]
            if found := re.search(r"portal listening on (http://127\.0\.0\.1:\d+)/portal/", line):
                self.portal = found[1]
                return
        raise AssertionError("the backend did not start: " + "".join(self.log_lines))

    def stop(self) -> str:
        assert self.server is not None and self.server.stderr is not None
        self.server.send_signal(signal.SIGTERM)
        assert self.server.wait(timeout=15) == 0
        return "".join(self.log_lines) + self.server.stderr.read()

    def add_officer(self, name: str) -> tuple[str, str]:
        out = proxitrace("backend", "officer", "add", name, "--config", str(self.toml))
        assert out.returncode == 0, out.stderr
        password = re.search(r"^password: (\S+)$", out.stdout, re.M)
        secret = re.search(r"^totp secret: ([A-Z2-7]+)$", out.stdout, re.M)
        assert password and secret
        return password[1], secret[1]


@pytest.fixture
def pilot(tmp_path: Path) -> Iterator[Pilot]:
    p = Pilot(tmp_path)
    yield p
    if p.server is not None and p.server.poll() is None:
        p.server.kill()
        p.server.wait()


def click_and_load(driver: webdriver.Chrome, css: str, within: object = None) -> None:
    """Click a submit button and wait until the next page replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    (within or driver).find_element(By.CSS_SELECTOR, css).click()  # type: ignore[attr-defined]
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def shoot(driver: webdriver.Chrome, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    assert path.stat().st_size > 1000


def log_in(driver: webdriver.Chrome, portal: str, name: str, password: str, code: str) -> None:
    driver.get(f"{portal}/portal/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.NAME, "code").send_keys(code)
    click_and_load(driver, "#login button")


def issue_tan(driver: webdriver.Chrome, portal: str, onset: dt.date | None, note: str) -> tuple[int, str]:
    driver.get(f"{portal}/portal/tans/new")
    if onset is not None:
        field = driver.find_element(By.NAME, "onset")
        driver.execute_script("arguments[0].value = arguments[1]", field, onset.isoformat())
    driver.find_element(By.NAME, "note").send_keys(note)
    click_and_load(driver, "#issue-tan button")
    if not driver.find_elements(By.ID, "tan"):
        raise AssertionError(driver.page_source)
    tan = driver.find_element(By.ID, "tan").text
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", tan), tan
    number = re.search(r"TAN #(\d+)", driver.title)
    assert number
    return int(number[1]), tan


def no_alert(driver: webdriver.Chrome) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 (the property raises when no dialog is open)


def test_officer_issues_a_tan_an_agent_reports_with_it(
    pilot: Pilot, browser: webdriver.Chrome, screenshots: Path
) -> None:
    keygen = proxitrace("backend", "keygen", "--config", str(pilot.toml))
    public = re.search(r'public_key = "([^"]+)"', keygen.stdout)
    assert keygen.returncode == 0 and public, keygen.stderr
    password, secret = pilot.add_officer(HOSTILE_NAME)
    target_password, target_secret = pilot.add_officer("locked-out")
    pilot.start()
    driver, portal = browser, pilot.portal
    assert pilot.api != portal

    # the device API's listener has no portal, the portal's has no device API
    driver.get(f"{pilot.api}/portal/login")
    assert "Log in" not in driver.page_source
    driver.get(f"{portal}/v1/health")
    assert "countryCode" not in driver.page_source

    # a wrong code, then the right one
    log_in(driver, portal, HOSTILE_NAME, password, "000000")
    assert "Login failed" in driver.find_element(By.ID, "error").text
    shoot(driver, screenshots, "01-login-failed")
    log_in(driver, portal, HOSTILE_NAME, password, pyotp.TOTP(secret).now())
    assert driver.current_url.endswith("/portal/tans/new")
    assert driver.find_element(By.ID, "officer-name").text == HOSTILE_NAME  # shown as text, not markup
    no_alert(driver)
    shoot(driver, screenshots, "02-issue-form")

    onset = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    used_id, tan = issue_tan(driver, portal, onset, HOSTILE_NOTE)
    assert f"onset {onset.isoformat()}" in driver.page_source
    qr = driver.find_element(By.CSS_SELECTOR, "img.qr")
    assert qr.get_attribute("src").startswith("data:image/svg+xml") and qr.size["width"] > 100
    shoot(driver, screenshots, "03-tan-issued")
    driver.set_window_size(390, 844)  # a phone
    shoot(driver, screenshots, "04-tan-issued-phone")
    driver.set_window_size(1100, 900)
    revoked_id, revoked_tan = issue_tan(driver, portal, None, "second")

    # an onset in the future is refused by the server, whatever the browser's date picker allowed
    driver.get(f"{portal}/portal/tans/new")
    field = driver.find_element(By.NAME, "onset")
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    driver.execute_script(
        "arguments[0].removeAttribute('max'); arguments[0].value = arguments[1]", field, tomorrow.isoformat()
    )
    click_and_load(driver, "#issue-tan button")
    assert "in the future" in driver.find_element(By.ID, "error").text

    # a real agent reports with the TAN read off the page
    a_conf, a_state = pilot.tmp / "a.toml", pilot.tmp / "a"
    a_conf.write_text(
        f'[agent]\nscheme = "gaen"\n'
        f'accept_unsynchronised_clock_testbed = true\n[backend]\nurl = "{pilot.api}"\npublic_key = "{public[1]}"\n'
    )
    store = Store.open(a_state)
    KeyRing(store, SchemeName.GAEN).ensure(time.time() - 86_400)
    store.close()
    agent = ("--config", str(a_conf), "--state-dir", str(a_state), "report", "--yes")
    sent = proxitrace(*agent, "--tan", tan)
    assert sent.returncode == 0 and "report sent" in sent.stdout, sent.stderr

    # revoke the other; the agent is refused with it
    driver.get(f"{portal}/portal/tans")
    row = driver.find_element(By.ID, f"tan-{revoked_id}")
    assert row.find_element(By.CLASS_NAME, "state").text == "open"
    assert driver.find_element(By.ID, f"tan-{used_id}").find_element(By.CLASS_NAME, "state").text == "used"
    click_and_load(driver, "button.revoke", row)
    assert driver.find_element(By.ID, f"tan-{revoked_id}").find_element(By.CLASS_NAME, "state").text == "revoked"
    note = driver.find_element(By.ID, f"tan-{used_id}").find_element(By.CLASS_NAME, "note")
    assert note.text == HOSTILE_NOTE and "&lt;script&gt;" in driver.page_source
    no_alert(driver)
    shoot(driver, screenshots, "05-issued-tans")
    refused = proxitrace(*agent, "--tan", revoked_tan)
    assert refused.returncode != 0 and "TAN" in refused.stderr, refused.stderr

    # enrolment sheet
    driver.get(f"{portal}/portal/enrolment")
    count = driver.find_element(By.NAME, "count")
    count.clear()
    count.send_keys("6")
    click_and_load(driver, "#enrolment button")
    codes = driver.find_elements(By.CSS_SELECTOR, "#codes li")
    assert len(codes) == 6 and all(c.find_element(By.TAG_NAME, "img").size["width"] > 50 for c in codes)
    shoot(driver, screenshots, "06-enrolment-sheet")

    # the dashboard counts the upload and both TANs
    driver.get(f"{portal}/portal/dashboard")
    assert driver.find_element(By.CSS_SELECTOR, "#total-uploads .today").text == "1"
    assert driver.find_element(By.CSS_SELECTOR, "#total-tans_issued .today").text == "2"
    assert driver.find_element(By.CSS_SELECTOR, "#total-tans_revoked .today").text == "1"
    charts = driver.find_elements(By.CSS_SELECTOR, ".charts img")
    assert charts and all(c.get_property("naturalWidth") == 320 for c in charts)  # the SVGs loaded under the CSP
    shoot(driver, screenshots, "07-dashboard")

    # CSRF: a form on another origin (a data: page) posting to the portal issues nothing
    driver.get(
        "data:text/html,<form id=f method=post action='" + portal + "/portal/tans'>"
        "<input name=csrf value=forged><input name=report_type value='confirmed test'>"
        "<input name=valid_hours value=24><button id=go>go</button></form>"
    )
    click_and_load(driver, "#go")
    assert "TAN issued" not in driver.page_source
    # ... nor does a request with the officer's own session cookie but no token
    cookie = driver.get_cookie("pt_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"]
    forged = _post(f"{portal}/portal/tans", {"report_type": "confirmed test", "valid_hours": "24"}, cookie["value"])
    assert forged[0] == 403
    driver.get(f"{portal}/portal/tans")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#tans tbody tr")) == 2

    # the audit log has the logins and the actions, never a TAN
    driver.get(f"{portal}/portal/audit")
    audit = driver.find_element(By.ID, "audit").text
    assert "login failed" in audit and "TAN issued" in audit and "TAN revoked" in audit and "officer added" in audit
    assert tan not in driver.page_source and revoked_tan not in driver.page_source
    shoot(driver, screenshots, "08-audit-log")

    # lockout: three wrong passwords lock the account; the right password and code are then refused too
    click_and_load(driver, "form.logout button")
    assert driver.current_url.endswith("/portal/login")
    for _ in range(3):
        log_in(driver, portal, "locked-out", "guess", "123456")
        assert "Login failed" in driver.find_element(By.ID, "error").text, driver.page_source
    log_in(driver, portal, "locked-out", target_password, pyotp.TOTP(target_secret).now())
    assert "Login failed" in driver.find_element(By.ID, "error").text, driver.page_source
    assert driver.current_url.endswith("/portal/login")
    shoot(driver, screenshots, "00-login")

    console = [entry["message"] for entry in driver.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m], console  # every page lives within the CSP

    log = pilot.stop()
    assert tan not in log and revoked_tan not in log and password not in log


def _post(url: str, form: dict[str, str], session: str) -> tuple[int, str]:
    import asyncio

    async def go() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(cookies={"pt_session": session}) as http,
            http.post(url, data=form, allow_redirects=False) as r,
        ):
            return r.status, await r.text()

    return asyncio.run(go())
