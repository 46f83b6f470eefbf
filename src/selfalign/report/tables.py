"""Console tables (rich) for a run's metrics, and the per-round columns shared with the HTML report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from selfalign.records import read_jsonl

# (header, metrics key, dotted into nested rows; format) for the per-round scalars, shown when any round has them
SCALARS = (
    ("IFEval prompt strict", "ifeval.prompt_level_strict_acc", "{:.1%}"),
    ("IFEval instr. loose", "ifeval.inst_level_loose_acc", "{:.1%}"),
    ("gold reward", "gold_reward", "{:.3f}"),
    ("win rate vs start", "win_rate", "{:.1%}"),
    ("mean tokens", "mean_tokens", "{:.1f}"),
    ("train records", "train_records", "{}"),
    ("train pairs", "train_pairs", "{}"),
    ("annotation accuracy", "annotation_accuracy", "{:.1%}"),
    ("labeller accuracy", "labeller.accuracy", "{:.1%}"),
    ("labeller flip rate", "labeller.flip_rate", "{:.1%}"),
)


def columns(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells: accuracy per difficulty, then the scalar metrics present in the run."""
    difficulties = list(rows[-1]["accuracy"]) if rows else []
    scalars = [(h, k, f) for h, k, f in SCALARS if any(_get(r, k) is not None for r in rows)]
    headers = ["round", *(f"acc {d}" for d in difficulties), *(h for h, _, _ in scalars)]
    cells = [
        [
            str(r["round"]),
            *(f"{100 * r['accuracy'][d]:.1f}%" if d in r["accuracy"] else "-" for d in difficulties),
            *(f.format(_get(r, k)) if _get(r, k) is not None else "" for _, k, f in scalars),
        ]
        for r in rows
    ]
    return headers, cells


def _get(row: dict, key: str) -> object:
    for part in key.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def print_metrics(run_dir: str | Path) -> None:
    headers, cells = columns(read_jsonl(Path(run_dir) / "metrics.jsonl"))
    table = Table(title=f"held-out metrics: {Path(run_dir).name}")
    for h in headers:
        table.add_column(h, justify="right")
    for row in cells:
        table.add_row(*row)
    Console().print(table)
