"""The report of a ``testbed sim`` run: summary.json, summary.csv and, with matplotlib, summary.png."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from agent.testbed.runner import SchemeResult


def write_report(results: list[SchemeResult], folder: Path) -> list[Path]:
    """summary.json, summary.csv and, with matplotlib installed, summary.png."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "summary.json", folder / "summary.csv"]
    written[0].write_text(json.dumps([asdict(r) for r in results], indent=1))
    with written[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scheme", "person", "positive", "true_contact", "notified"])
        for r in results:
            for p in r.people:
                w.writerow([r.scheme, p.name, p.positive, p.true_contact, p.notified])
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(7, 3))
    names = [p.name for p in results[0].people]
    for row, r in enumerate(results):
        for col, p in enumerate(r.people):
            mark = "o" if p.true_contact else "x"
            color = "tab:red" if p.notified else "tab:grey"
            ax.scatter(col, row, marker=mark, color=color, s=80)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(results)), [r.scheme for r in results])
    ax.set_title("o = true close contact, x = not; red = notified")
    fig.tight_layout()
    fig.savefig(folder / "summary.png")
    written.append(folder / "summary.png")
    return written
