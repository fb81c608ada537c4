"""The operator's dashboard: per-day aggregates (nothing per person) gathered from the store and the export
folder, and the small SVG bar charts that show their trend. ``gather`` reads; ``bar_chart`` is pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from agent.clock import day_of, day_to_iso
from agent.schemes.base import SchemeName
from agent.server.db import ServerStore

DAYS_SHOWN = 14
_EXPORT = re.compile(r"^(\d+)-(\d+)-\d{5}\.zip$")


@dataclass(frozen=True)
class Series:
    name: str
    title: str


SERIES = (
    Series("tans_issued", "TANs issued"),
    Series("tans_used", "TANs used"),
    Series("tans_expired", "TANs expired unused"),
    Series("tans_revoked", "TANs revoked"),
    Series("uploads", "Uploads (real, not dummy traffic)"),
    Series("keys_published", "Keys stored for publication"),
    Series("list_files", "List files published"),
    Series("ebid_registrations", "EBID registrations"),
    Series("at_risk_verdicts", "At-risk verdicts"),
)


@dataclass(frozen=True)
class Dashboard:
    days: tuple[int, ...]
    values: dict[str, tuple[int, ...]]
    last_publish: float | None
    outbox_waiting: int
    outbox_retrying: int

    def total(self, name: str) -> int:
        return sum(self.values[name])


def export_files_by_day(export_dir: Path) -> tuple[dict[int, int], float | None]:
    """List files per UTC day their bucket ended, and the newest bucket end (the last publish)."""
    per_day: dict[int, int] = {}
    last: float | None = None
    for scheme in SchemeName:
        folder = export_dir / scheme.value
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            found = _EXPORT.match(path.name)
            if found:
                end = int(found[2])
                per_day[day_of(end - 1)] = per_day.get(day_of(end - 1), 0) + 1
                last = end if last is None else max(last, end)
    return per_day, last


def gather(store: ServerStore, export_dir: Path, now: float, days: int = DAYS_SHOWN) -> Dashboard:
    today = day_of(now)
    shown = tuple(range(today - days + 1, today + 1))
    counts = store.daily_counts(shown[0])
    expired_live = store.expired_tans_by_day(now)
    keys: dict[int, int] = {}
    for scheme in (SchemeName.GAEN, SchemeName.DP3T):
        for day, n in store.keys_by_day(scheme).items():
            keys[day] = keys.get(day, 0) + n
    files, last = export_files_by_day(export_dir)
    values: dict[str, tuple[int, ...]] = {}
    for s in SERIES:
        if s.name == "keys_published":
            values[s.name] = tuple(keys.get(d, 0) for d in shown)
        elif s.name == "list_files":
            values[s.name] = tuple(files.get(d, 0) for d in shown)
        elif s.name == "tans_expired":
            values[s.name] = tuple(counts.get((d, s.name), 0) + expired_live.get(d, 0) for d in shown)
        else:
            values[s.name] = tuple(counts.get((d, s.name), 0) for d in shown)
    waiting, retrying = store.outbox_state()
    return Dashboard(shown, values, None if last is None else float(last), waiting, retrying)


def bar_chart(title: str, days: tuple[int, ...], values: tuple[int, ...], width: int = 320, height: int = 120) -> str:
    """A bar per day, the latest on the right, the maximum written top left; SVG text, no script."""
    top = max(values, default=0)
    pad, label_h = 4, 16
    plot_h = height - 2 * label_h
    bar_w = (width - 2 * pad) / max(1, len(values))
    bars = []
    for i, v in enumerate(values):
        h = 0.0 if top == 0 else plot_h * v / top
        x = pad + i * bar_w
        y = label_h + plot_h - h
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(1.0, bar_w - 2):.1f}" height="{h:.1f}" fill="#2b6cb0">'
            f"<title>{day_to_iso(days[i])}: {v}</title></rect>"
        )
    first = day_to_iso(days[0]) if days else ""
    last = day_to_iso(days[-1]) if days else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="{pad}" y="12" font-family="sans-serif" font-size="11">{escape(title)} (max {top})</text>'
        + "".join(bars)
        + f'<line x1="0" y1="{label_h + plot_h}" x2="{width}" y2="{label_h + plot_h}" stroke="#999"/>'
        f'<text x="{pad}" y="{height - 3}" font-family="sans-serif" font-size="10">{first}</text>'
        f'<text x="{width - pad}" y="{height - 3}" font-family="sans-serif" font-size="10" '
        f'text-anchor="end">{last}</text></svg>'
    )
