"""Helpers shared by the testbed benchmarks: run a shipped config once per seed, format mean ± sd."""

from __future__ import annotations

import statistics
from pathlib import Path

from selfalign.cli import main as selfalign
from selfalign.records import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def run(config: str | Path, out: Path, seed: int, overrides: list[str]) -> list[dict]:
    """`selfalign run CONFIG --out OUT seed=SEED ...`, skipped when OUT already finished; its metrics rows."""
    if not (out / "metrics.jsonl").is_file():
        code = selfalign(["run", str(ROOT / "configs" / config), "--out", str(out), f"seed={seed}", *overrides])
        assert code == 0, f"run failed: {out}"
    return read_jsonl(out / "metrics.jsonl")


def spread(xs: list[float], fmt: str = "{:.1%}") -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{fmt.format(statistics.mean(xs))} ± {fmt.format(sd)}"
