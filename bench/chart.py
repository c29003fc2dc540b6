"""Draw a throughput-by-clients chart (PNG) from a CSV of clients,workload,tps.

Usage: .venv/bin/python bench/chart.py data.csv out.png
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(data: Path, out: Path) -> None:
    """Read the CSV and write one line per workload: transactions per second by clients."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with data.open(newline="") as f:
        for row in csv.DictReader(f):
            series[row["workload"]].append((int(row["clients"]), float(row["tps"])))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for workload, points in series.items():
        points.sort()
        ax.plot([c for c, _ in points], [t for _, t in points], marker="o", label=workload)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({c for pts in series.values() for c, _ in pts}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("pgbench clients (2 cores)")
    ax.set_ylabel("transactions per second")
    ax.set_title("Ledger throughput: deduct_credits spread, one hot account, tpcb-like")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
