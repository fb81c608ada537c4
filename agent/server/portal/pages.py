"""The portal's web layer: routes, server-rendered pages (Jinja2, autoescaping on), security headers.

Every page is plain HTML and one stylesheet: no script at all, so the Content-Security-Policy can forbid
scripts outright. Every POST carries a CSRF token (``csrf``); every page but the login needs a session.
The pages live under ``/portal/``, on the device API's listener or on one of their own (``[portal] host``).

Every handler reaches the store (and Argon2, and the export folder) from a worker thread
(``asyncio.to_thread``), as the device API does: on the event loop's thread one slow query, or a store
another connection holds locked, would stall every other request the process serves, devices' included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import segno
from aiohttp import web

from agent.server.portal import csrf, dashboard, metrics
from agent.server.portal.accounts import Verdict
from agent.server.portal.audit import Action, to_csv, utc, utc_day
from agent.server.portal.service import Portal, PortalError, ReportType
from agent.server.portal.sessions import LOGIN_COOKIE, SESSION_COOKIE, CookieSettings, new_token, sign, unsign
from agent.server.portal.store import Officer

log = logging.getLogger(__name__)
PREFIX = "/portal"
PORTAL: web.AppKey[Portal] = web.AppKey("portal", Portal)
_HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
_VALIDITY_HOURS = (1, 24, 72)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every answer; a refusal or redirect raised by a handler becomes a plain answer
    here, so the device API's JSON error bodies never leak into the pages."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        headers = {k: v for k, v in exc.headers.items() if k in ("Location", "Allow")}
        response = web.Response(status=exc.status, text=exc.text if exc.status >= 400 else None, headers=headers)
    response.headers.update(SECURITY_HEADERS)
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def portal_app(portal: Portal) -> web.Application:
    """The pages, to mount at ``/portal/``."""
    app = web.Application(middlewares=[security_headers])
    app[PORTAL] = portal
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        context_processors=[],
    )
    env = aiohttp_jinja2.get_env(app)
    env.filters["utc"] = utc
    env.filters["utc_day"] = utc_day
    env.globals["prefix"] = PREFIX
    r = app.router
    r.add_get("/", _home)
    r.add_get("/login", _login_form)
    r.add_post("/login", _login)
    r.add_post("/logout", _logout)
    r.add_get("/tans/new", _tan_form)
    r.add_post("/tans", _tan_issue)
    r.add_get("/tans", _tan_list)
    r.add_post("/tans/{id:\\d+}/revoke", _tan_revoke)
    r.add_get("/enrolment", _enrolment_form)
    r.add_post("/enrolment", _enrolment_issue)
    r.add_get("/audit", _audit)
    r.add_get("/audit.csv", _audit_csv)
    r.add_get("/dashboard", _dashboard)
    r.add_get("/charts/{name:[a-z_]+}.svg", _chart)
    r.add_static("/static", _HERE / "static", append_version=False)
    return app


def mount(app: web.Application, portal: Portal) -> None:
    """Add the pages (``/portal/``) and ``/metrics`` to ``app``."""
    app.add_subapp(PREFIX + "/", portal_app(portal))
    reg = metrics.registry(lambda: _board_and_totals(portal))

    async def metrics_handler(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(metrics.exposition, reg)  # the collector reads the store
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE, **SECURITY_HEADERS})

    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound(PREFIX + "/")

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/", root)


def standalone_app(portal: Portal) -> web.Application:
    """The portal on a listener of its own: the pages, ``/metrics`` and a redirect from ``/``."""
    app = web.Application(middlewares=[security_headers])
    mount(app, portal)
    return app


def _board_and_totals(portal: Portal) -> tuple[dashboard.Dashboard, dict[str, int]]:
    board = dashboard.gather(portal.store, portal.config.export_dir, portal.clock.now())
    return board, portal.store.count_totals()


# ---- helpers -----------------------------------------------------------------------------------------


def _portal(request: web.Request) -> Portal:
    return request.app[PORTAL]


def _cookies(portal: Portal) -> CookieSettings:
    return CookieSettings(portal.config.portal.session_seconds, portal.config.portal.secure_cookies)


def _session_officer(request: web.Request) -> Officer | None:
    p = _portal(request)
    return p.sessions.officer(request.cookies.get(SESSION_COOKIE), p.clock.now())


async def _require(request: web.Request) -> Officer:
    officer = await asyncio.to_thread(_session_officer, request)
    if officer is None:
        raise web.HTTPSeeOther(f"{PREFIX}/login")
    return officer


def _csrf_for_session(request: web.Request) -> str:
    p = _portal(request)
    token = unsign(p.cookie_key, request.cookies.get(SESSION_COOKIE))
    return csrf.token_for(p.cookie_key, token or "")


async def _form(request: web.Request, bound_to_cookie: str) -> dict[str, str]:
    """The POSTed form, after its CSRF token was checked against the cookie it must be bound to."""
    p = _portal(request)
    data = await request.post()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    token = unsign(p.cookie_key, request.cookies.get(bound_to_cookie))
    if not csrf.valid(p.cookie_key, token, form.get(csrf.FIELD)):
        log.warning("portal: a form arrived without a valid CSRF token; refused")
        raise web.HTTPForbidden(text="This form has expired or did not come from this portal. Reload and retry.")
    return form


def _page(request: web.Request, template: str, officer: Officer | None, status: int = 200, **ctx: Any) -> web.Response:
    ctx.setdefault("csrf_token", _csrf_for_session(request) if officer else "")
    ctx.setdefault("error", "")
    return aiohttp_jinja2.render_template(template, request, {"officer": officer, **ctx}, status=status)


# ---- login and logout --------------------------------------------------------------------------------


async def _home(request: web.Request) -> web.Response:
    officer = await asyncio.to_thread(_session_officer, request)
    return _redirect(f"{PREFIX}/tans/new" if officer else f"{PREFIX}/login")


async def _login_form(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    p = _portal(request)
    token = unsign(p.cookie_key, request.cookies.get(LOGIN_COOKIE)) or new_token()
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {"officer": None, "csrf_token": csrf.token_for(p.cookie_key, token), "error": error},
        status=status,
    )
    response.set_cookie(LOGIN_COOKIE, sign(p.cookie_key, token), **_cookies(p).attributes())  # type: ignore[arg-type]
    return response


async def _login(request: web.Request) -> web.Response:
    p = _portal(request)
    loop = asyncio.get_running_loop()
    began = loop.time()
    form = await _form(request, LOGIN_COOKIE)
    session = await asyncio.to_thread(_log_in, p, form)
    if session is not None:
        response = _redirect(f"{PREFIX}/tans/new")
        response.set_cookie(SESSION_COOKIE, session, **_cookies(p).attributes())  # type: ignore[arg-type]
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response
    await asyncio.sleep(max(0.0, p.config.portal.failure_delay_seconds - (loop.time() - began)))
    return await _login_form(request, "Login failed: wrong name, password or code, or the account is locked.", 403)


def _log_in(p: Portal, form: dict[str, str]) -> str | None:
    """Judge a login and write its audit entry: the new session's cookie, or None when refused."""
    now = p.clock.now()
    name = form.get("name", "")[:200]
    verdict, officer = p.accounts.login(name, form.get("password", "")[:1000], form.get("code", "")[:20], now)
    if verdict is Verdict.OK and officer is not None:
        p.audit.record(now, officer.name, Action.LOGIN)
        return p.sessions.start(officer, now)
    p.audit.record(now, officer.name if officer else "(unknown name)", Action.LOGIN_FAILED, verdict.value)
    return None


async def _logout(request: web.Request) -> web.Response:
    p = _portal(request)
    officer = await _require(request)
    await _form(request, SESSION_COOKIE)

    def end() -> None:
        p.sessions.end(request.cookies.get(SESSION_COOKIE))
        p.audit.record(p.clock.now(), officer.name, Action.LOGOUT)

    await asyncio.to_thread(end)
    response = _redirect(f"{PREFIX}/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# ---- TANs --------------------------------------------------------------------------------------------


def _tan_form_page(request: web.Request, officer: Officer, error: str = "", status: int = 200) -> web.Response:
    p = _portal(request)
    today = p.today()
    return _page(
        request,
        "tan_new.html",
        officer,
        status,
        error=error,
        today=today.isoformat(),
        earliest=(today - dt.timedelta(days=p.config.lists.retention_days)).isoformat(),
        report_types=[t.value for t in ReportType],
        validity_hours=_VALIDITY_HOURS,
        default_hours=max(1, p.config.tan.valid_seconds // 3600),
    )


async def _tan_form(request: web.Request) -> web.Response:
    return _tan_form_page(request, await _require(request))


async def _tan_issue(request: web.Request) -> web.Response:
    p = _portal(request)
    officer = await _require(request)
    form = await _form(request, SESSION_COOKIE)
    try:
        onset = _date(form.get("onset", ""))
        report_type = ReportType(form.get("report_type", ""))
        hours = int(form.get("valid_hours", "0"))
        note = form.get("note", "").strip()
        new = await asyncio.to_thread(p.issue_tan, officer.name, onset, report_type, hours * 3600, note)
    except (PortalError, ValueError) as exc:
        return _tan_form_page(request, officer, str(exc) if isinstance(exc, PortalError) else "invalid form", 400)
    qr = segno.make(new.code, error="m").svg_data_uri(scale=6, border=2)
    return _page(request, "tan_issued.html", officer, tan=new, qr=qr)


def _date(text: str) -> dt.date | None:
    if not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise PortalError("onset: expected a date YYYY-MM-DD") from None


async def _tan_list(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    officer = await _require(request)
    tans = await asyncio.to_thread(_portal(request).tans)
    return _page(request, "tans.html", officer, status, tans=tans, error=error)


async def _tan_revoke(request: web.Request) -> web.Response:
    p = _portal(request)
    officer = await _require(request)
    await _form(request, SESSION_COOKIE)
    try:
        await asyncio.to_thread(p.revoke_tan, officer.name, int(request.match_info["id"]))
    except PortalError as exc:
        return await _tan_list(request, str(exc), 409)
    return _redirect(f"{PREFIX}/tans")


# ---- enrolment codes ---------------------------------------------------------------------------------


async def _enrolment_form(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    p = _portal(request)
    return _page(
        request,
        "enrolment.html",
        await _require(request),
        status,
        error=error,
        batch_max=p.config.portal.enrolment_batch_max,
        default_days=p.config.ebid.enrolment_valid_seconds // 86_400,
    )


async def _enrolment_issue(request: web.Request) -> web.Response:
    p = _portal(request)
    officer = await _require(request)
    form = await _form(request, SESSION_COOKIE)
    try:
        count, days = int(form.get("count", "0")), int(form.get("valid_days", "0"))
        issued, expires = await asyncio.to_thread(p.issue_enrolment, officer.name, count, days * 86_400)
    except (PortalError, ValueError) as exc:
        return await _enrolment_form(request, str(exc) if isinstance(exc, PortalError) else "invalid form", 400)
    sheet = [(c, segno.make(c, error="m").svg_data_uri(scale=3, border=2)) for c in issued]
    return _page(request, "enrolment_sheet.html", officer, sheet=sheet, expires=expires)


# ---- audit log and dashboard -------------------------------------------------------------------------


async def _audit(request: web.Request) -> web.Response:
    officer = await _require(request)
    entries = await asyncio.to_thread(_portal(request).audit.entries, 500)
    return _page(request, "audit.html", officer, entries=entries)


async def _audit_csv(request: web.Request) -> web.Response:
    p = _portal(request)
    officer = await _require(request)

    def export() -> str:
        p.audit.record(p.clock.now(), officer.name, Action.AUDIT_EXPORTED)
        return to_csv(p.audit.entries())

    return web.Response(
        text=await asyncio.to_thread(export),
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="proxitrace-audit.csv"'},
    )


async def _dashboard(request: web.Request) -> web.Response:
    officer = await _require(request)
    board, _ = await asyncio.to_thread(_board_and_totals, _portal(request))
    return _page(request, "dashboard.html", officer, board=board, series=dashboard.SERIES)


async def _chart(request: web.Request) -> web.Response:
    await _require(request)
    name = request.match_info["name"]
    found = [s for s in dashboard.SERIES if s.name == name]
    if not found:
        raise web.HTTPNotFound(text="no such chart")
    board, _ = await asyncio.to_thread(_board_and_totals, _portal(request))
    svg = dashboard.bar_chart(found[0].title, board.days, board.values[name])
    return web.Response(text=svg, content_type="image/svg+xml")
