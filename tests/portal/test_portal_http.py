"""The portal's pages and the admin API over HTTP against a real backend on 127.0.0.1: security headers and
CSP, CSRF, escaping, per-officer API tokens, the separate listener, ``/metrics``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pyotp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families
from support.backend_harness import ADMIN_TOKEN, T0, RunningBackend, backend_config, running_backend

from agent.clock import ManualClock
from agent.server.app import create_portal_app
from agent.server.portal.accounts import Credentials
from agent.server.portal.dashboard import bar_chart
from agent.server.portal.pages import SECURITY_HEADERS
from agent.server.portal.service import PortalError, ReportType

HOSTILE_NAME = '<script>alert("name")</script>'
HOSTILE_NOTE = '"><img src=x onerror=alert(2)>'
PORTAL = {"secure_cookies": False, "failure_delay_seconds": 0}  # aiohttp's client sends no Secure cookie over http


@pytest.fixture
async def rb(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey
) -> AsyncIterator[RunningBackend]:
    async with running_backend(backend_config(tmp_path / "backend", portal=PORTAL), clock, signing_key) as running:
        yield running


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found[1]


async def logged_in(rb: RunningBackend, name: str = HOSTILE_NAME) -> tuple[aiohttp.ClientSession, str, Credentials]:
    creds = rb.backend.portal.accounts.add(name, True, T0)
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{rb.url}/portal/login") as r:
        token = csrf_of(await r.text())
    form = {"csrf": token, "name": name, "password": creds.password, "code": pyotp.TOTP(creds.totp_secret).at(T0)}
    async with http.post(f"{rb.url}/portal/login", data=form) as r:
        assert r.status == 200 and r.url.path == "/portal/tans/new"
        return http, csrf_of(await r.text()), creds


async def test_every_portal_answer_carries_the_security_headers(
    rb: RunningBackend, http: aiohttp.ClientSession
) -> None:
    for path in ("/portal/login", "/portal/tans", "/portal/static/portal.css", "/metrics", "/portal/nope"):
        async with http.get(rb.url + path, allow_redirects=False) as r:
            for name, value in SECURITY_HEADERS.items():
                assert r.headers.get(name) == value, (path, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "'unsafe-inline'" not in csp
    async with http.get(rb.url + "/portal/login") as r:
        page = await r.text()
    assert "<script" not in page and " style=" not in page and " on" not in re.sub(r"\bon[a-z]*\b(?!=)", "", page)


async def test_pages_need_a_session_and_forms_a_csrf_token(rb: RunningBackend, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{rb.url}/portal/dashboard", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/portal/login"
    async with http.post(f"{rb.url}/portal/login", data={"name": "x", "password": "y"}) as r:
        assert r.status == 403 and "did not come from this portal" in await r.text()
    officer, token, _ = await logged_in(rb)
    async with officer:
        form = {"report_type": "confirmed test", "valid_hours": "24", "note": ""}
        async with officer.post(f"{rb.url}/portal/tans", data={**form, "csrf": "0" * 64}) as r:
            assert r.status == 403
        async with officer.post(f"{rb.url}/portal/tans", data=form) as r:
            assert r.status == 403
        assert rb.backend.portal.tans() == []
        async with officer.post(f"{rb.url}/portal/tans", data={**form, "csrf": token}) as r:
            assert r.status == 200 and 'id="tan"' in await r.text()
        assert [t.state for t in rb.backend.portal.tans()] == ["open"]


async def test_hostile_officer_name_and_note_are_text(rb: RunningBackend) -> None:
    officer, token, _ = await logged_in(rb)
    async with officer:
        form = {"csrf": token, "report_type": "clinical diagnosis", "valid_hours": "1", "note": HOSTILE_NOTE}
        async with officer.post(f"{rb.url}/portal/tans", data=form) as r:
            issued = await r.text()
        async with officer.get(f"{rb.url}/portal/tans") as r:
            listing = await r.text()
        async with officer.get(f"{rb.url}/portal/audit") as r:
            audit = await r.text()
        async with officer.get(f"{rb.url}/portal/audit.csv") as r:
            exported = await r.text()
    for page in (issued, listing, audit):
        assert HOSTILE_NAME not in page and "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in page
    assert HOSTILE_NOTE not in listing and "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in listing
    assert list(csv.reader(io.StringIO(exported)))[1][2] == HOSTILE_NAME  # CSV is data, downloaded, not rendered


async def test_onset_and_validity_are_checked(rb: RunningBackend) -> None:
    portal = rb.backend.portal
    today = portal.today()
    with pytest.raises(PortalError, match="in the future"):
        portal.issue_tan("ann", today + dt.timedelta(days=1), ReportType.CONFIRMED_TEST, None, "")
    with pytest.raises(PortalError, match="at most 14 days back"):
        portal.issue_tan("ann", today - dt.timedelta(days=15), ReportType.CONFIRMED_TEST, None, "")
    with pytest.raises(PortalError, match="validity"):
        portal.issue_tan("ann", today, ReportType.CONFIRMED_TEST, 30, "")
    ok = portal.issue_tan("ann", today - dt.timedelta(days=14), ReportType.CLINICAL_DIAGNOSIS, 3600, "")
    assert ok.expires == T0 + 3600 and ok.onset == today - dt.timedelta(days=14)


async def test_revoked_tan_is_refused_at_the_exchange_and_a_used_one_cannot_be_revoked(
    rb: RunningBackend, http: aiohttp.ClientSession
) -> None:
    portal = rb.backend.portal
    used = portal.issue_tan("ann", None, ReportType.CONFIRMED_TEST, None, "")
    revoked = portal.issue_tan("ann", None, ReportType.CONFIRMED_TEST, None, "")
    portal.revoke_tan("ann", revoked.id)
    async with http.post(f"{rb.url}/v1/onset", json={"tan": revoked.code}) as r:
        assert r.status == 403
    async with http.post(f"{rb.url}/v1/onset", json={"tan": used.code}) as r:
        assert r.status == 200
    with pytest.raises(PortalError, match="not open"):
        portal.revoke_tan("ann", used.id)
    with pytest.raises(PortalError, match="not open"):
        portal.revoke_tan("ann", revoked.id)
    assert {t.id: t.state for t in portal.tans()} == {used.id: "used", revoked.id: "revoked"}
    issued_rows = rb.backend.store.database.execute("SELECT * FROM issued_tans").fetchall()
    assert all(used.code.replace("-", "") not in repr(row) for row in issued_rows)  # only a hash, coarse hour
    assert {row[3] for row in issued_rows} == {T0 - T0 % 3600}


async def test_officer_api_tokens_authorise_the_admin_api(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    config = backend_config(tmp_path / "b", server={"admin_token": ""}, portal=PORTAL)
    async with running_backend(config, clock, signing_key) as rb:
        accounts = rb.backend.portal.accounts
        async with http.post(f"{rb.url}/v1/admin/tans", json={}) as r:
            assert r.status == 404  # no shared token and no officer token: the admin API is off
        accounts.add("automation", False, T0)
        token = accounts.new_api_token("automation", T0)
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{rb.url}/v1/admin/tans", json={"onset": "2025-11-22"}, headers=headers) as r:
            assert r.status == 201
            tan = (await r.json())["tan"]
        async with http.post(f"{rb.url}/v1/admin/enrolment-codes", json={"count": 2}, headers=headers) as r:
            assert r.status == 201 and len((await r.json())["codes"]) == 2
        async with http.post(
            f"{rb.url}/v1/admin/tans", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as r:
            assert r.status == 401
        async with http.post(f"{rb.url}/v1/admin/tans", json={"onset": "2099-01-01"}, headers=headers) as r:
            assert r.status == 400 and "future" in (await r.json())["error"]
        entries = rb.backend.portal.audit.entries()
        assert [e.actor for e in entries] == ["automation (API token)"] * 2
        assert all(tan not in e.detail for e in entries)
        accounts.add("other", False, T0)
        accounts.new_api_token("other", T0)
        accounts.disable("automation")
        async with http.post(f"{rb.url}/v1/admin/tans", json={}, headers=headers) as r:
            assert r.status == 401  # a disabled officer's token is dead


async def test_metrics_and_dashboard_count_the_same_events(rb: RunningBackend, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{rb.url}/v1/admin/tans", json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        tan = (await r.json())["tan"]
    async with http.post(f"{rb.url}/v1/onset", json={"tan": tan}) as r:
        assert r.status == 200
    async with http.post(f"{rb.url}/v1/onset", json={"fake": True}) as r:
        assert r.status == 200  # dummy traffic counts nothing
    async with http.get(f"{rb.url}/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["proxitrace_tans_issued_total"] == 1 and samples["proxitrace_tans_used_total"] == 1
    assert samples["proxitrace_uploads_total"] == 0 and samples["proxitrace_ebid_registrations_total"] == 0
    assert "python_gc_objects_collected_total" not in samples  # its own registry, not the global default
    officer, _, _ = await logged_in(rb, "ann")
    async with officer, officer.get(f"{rb.url}/portal/dashboard") as r:
        page = await r.text()
    assert re.search(r'id="total-tans_used"><td>TANs used</td><td class="today">1</td>', page)


async def test_the_portal_can_have_a_listener_of_its_own(
    tmp_path: Path, clock: ManualClock, signing_key: ec.EllipticCurvePrivateKey, http: aiohttp.ClientSession
) -> None:
    config = backend_config(tmp_path / "b", portal={**PORTAL, "host": "127.0.0.1", "port": 0})
    async with running_backend(config, clock, signing_key) as rb:
        async with http.get(f"{rb.url}/portal/login") as r:
            assert r.status == 404  # the device API's listener has no portal
        async with http.get(f"{rb.url}/metrics") as r:
            assert r.status == 404
        portal = TestServer(create_portal_app(rb.backend), host="127.0.0.1")
        await portal.start_server()
        try:
            base = str(portal.make_url("")).rstrip("/")
            async with http.get(f"{base}/portal/login") as r:
                assert r.status == 200 and "Log in" in await r.text()
            async with http.get(f"{base}/v1/health") as r:
                assert r.status == 404  # and the portal's has no device API
            async with http.get(f"{base}/", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/portal/"
        finally:
            await portal.close()


def test_bar_chart_is_escaped_svg_with_one_bar_per_day() -> None:
    svg = bar_chart("<TANs & co>", (20_000, 20_001, 20_002), (0, 5, 10))
    assert svg.count("<rect x=") == 3 and "&lt;TANs &amp; co&gt; (max 10)" in svg and "<TANs" not in svg
    heights = [float(h) for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)]
    assert heights[0] == 0 and heights[2] == 2 * heights[1] > 0


async def test_retention_keeps_the_final_state_and_counts_an_expired_tan_once(
    rb: RunningBackend, clock: ManualClock
) -> None:
    portal = rb.backend.portal
    expiring = portal.issue_tan("ann", None, ReportType.CONFIRMED_TEST, 3600, "")
    used = portal.issue_tan("ann", None, ReportType.CONFIRMED_TEST, 3600, "")
    assert rb.backend.uploads.exchange({"tan": used.code}, "127.0.0.1").token
    await clock.advance(7200)
    assert {t.id: t.state for t in portal.tans()} == {expiring.id: "expired", used.id: "used"}
    day = int(T0 // 86_400)
    before = rb.backend.store.expired_tans_by_day(clock.now())
    assert before == {day: 1}
    await clock.advance(86_400)
    rb.backend.maintain()  # deletes the TANs a day after they expired
    assert rb.backend.store.tan_states(clock.now()) == {}
    assert {t.id: t.state for t in portal.tans()} == {expiring.id: "expired", used.id: "used"}
    assert rb.backend.store.expired_tans_by_day(clock.now()) == {}
    assert rb.backend.store.daily_counts(day)[(day, "tans_expired")] == 1
    rb.backend.maintain()
    assert rb.backend.store.daily_counts(day)[(day, "tans_expired")] == 1
