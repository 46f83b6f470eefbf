"""Console tables (rich) for a run's metrics."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from selfalign.records import read_jsonl


def print_metrics(run_dir: str | Path) -> None:
    rows = read_jsonl(Path(run_dir) / "metrics.jsonl")
    difficulties = list(rows[-1]["accuracy"]) if rows else []
    table = Table(title=f"held-out accuracy: {Path(run_dir).name}")
    table.add_column("round", justify="right")
    for d in difficulties:
        table.add_column(f"difficulty {d}", justify="right")
    table.add_column("train records", justify="right")
    for r in rows:
        table.add_row(
            str(r["round"]),
            *(f"{100 * r['accuracy'][d]:.1f}%" if d in r["accuracy"] else "-" for d in difficulties),
            str(r.get("train_records", "")),
        )
    Console().print(table)
