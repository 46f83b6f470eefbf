"""Helpers shared by the testbed benchmarks: run a shipped config once per seed, format mean ± sd."""

from __future__ import annotations

import argparse
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


def testbed_parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """The options every testbed benchmark takes: --seeds and --out (a finished run there is reused)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed and system")
    ap.add_argument("--out", type=Path, default=Path(out), help="runs go here; a finished run is reused")
    return ap
