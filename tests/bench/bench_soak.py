"""A fortnight unattended: one ``proxitrace run`` on the simulated BlueZ for 14 simulated days.

Run: python tests/bench/bench_soak.py [--days 14] [--speed 600] [--peers 50] [--png soak.png]
(needs the ``plot`` extra for the PNG). 50 peers come and go on a daily schedule, the agent syncs daily against
``proxitrace backend serve`` on 127.0.0.1 and keeps 3 days (retention bites from day 4). Prints the growth
figures and the targets:
  RSS growth < 5 % from day 2 to the last day; DB size flat once retention bites (no later day's maximum more
  than 10 % above that of the first day retention bites: a weekend's smaller store is not growth);
  no fd or asyncio-task growth; 0 supervisor restarts; scan continuity >= 99.9 % of minutes with a peer in
  range. At 600x a simulated minute is 0.1 s: two air ticks, so a peer is reported about twice a minute.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from agent.clock import DAY
from agent.testbed.soak import SoakResult, SoakSettings, run_soak


def targets(r: SoakResult) -> dict[str, bool]:
    f = r.figures()
    fds, tasks = f["fds_first_last_max"], f["tasks_first_last_max"]
    db = f["db_peak_growth_after_retention"]
    return {
        "rss_growth_below_5pct": float(f["rss_growth"]) < 0.05,  # type: ignore[arg-type]
        "db_flat_after_retention": db is None or float(db) <= 0.10,  # type: ignore[arg-type]
        "no_fd_growth": fds[1] <= fds[0],  # type: ignore[index]
        "no_task_growth": tasks[1] <= tasks[0],  # type: ignore[index]
        "no_supervisor_restarts": r.restarts == 0,
        "continuity_999": r.continuity >= 0.999,
        "clean_exit": r.exit_code == 0,
    }


def plot(r: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [s.t / DAY for s in r.samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    axes[0].plot(days, [s.rss_bytes / 1e6 for s in r.samples])
    axes[0].set_ylabel("RSS (MB)")
    axes[1].plot(days, [s.db_bytes / 1e6 for s in r.samples])
    axes[1].set_ylabel("DB + WAL (MB)")
    axes[2].plot(days, [s.fds for s in r.samples], label="open fds")
    axes[2].plot(days, [s.asyncio_tasks for s in r.samples], label="asyncio tasks")
    axes[2].plot(days, [s.restarts for s in r.samples], label="supervisor restarts")
    axes[2].legend(loc="upper left")
    hourly: dict[int, list[float]] = {}
    for t, v in r.sightings_per_peer_minute:
        hourly.setdefault(int(t // 3600), []).append(v)
    axes[3].plot([h / 24 for h in sorted(hourly)], [sum(v) / len(v) for _, v in sorted(hourly.items())])
    axes[3].set_ylabel("sightings / peer / min")
    axes[3].set_xlabel("simulated day")
    fig.suptitle(f"proxitrace soak: {r.settings.days:g} days at {r.settings.speed:g}x, {r.settings.peers} peers")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--retention-days", type=int, default=3)
    parser.add_argument("--png", type=Path, default=Path("soak.png"))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    settings = SoakSettings(days=args.days, speed=args.speed, peers=args.peers, retention_days=args.retention_days)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="proxitrace-soak-"))
    result = run_soak(settings, workdir)
    report = json.dumps({"figures": result.figures(), "targets": targets(result)}, indent=1)
    (workdir / "figures.json").write_text(report)
    print(report)
    plot(result, args.png)
    print(f"plot: {args.png}; work directory: {workdir}")


if __name__ == "__main__":
    main()
