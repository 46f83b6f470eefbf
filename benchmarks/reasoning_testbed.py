"""STaR and RFT on the arithmetic testbed (issue: core), over several seeds, at equal compute.

Every system starts from the shipped checkpoint `builtin:arith-tiny` (trained on 1-4 digit sums),
draws its problems from the same pool of 200 fresh 4-, 5- and 6-digit sums per round, and is judged
on the same held-out sets (100 sums each of 4-7 digits, greedy decoding).

- STaR with and without rationalization: the demo config (3 rounds x 600 problems x 4 samples at
  T=0.7, 120 training steps per round continuing from the previous round, all kept data so far).
- RFT: one round, k=12 samples per problem for the 600 problems of round 1 (the 7,200 samples STaR
  draws without rationalization), 360 training steps of the base model (STaR's 3 x 120).
  With RFT's dedup (distinct step sequences, farthest by edit distance), without dedup at the same
  number of records (a seeded random subset), and without dedup on everything it kept.

    python benchmarks/reasoning_testbed.py --seeds 0 1 2 --out runs/bench-reasoning
"""

from __future__ import annotations

from pathlib import Path

from common import ROOT, run, spread, testbed_parser

DEMO = ROOT / "src" / "selfalign" / "configs" / "demo.yaml"
DIGITS = ["4", "5", "6", "7"]
RFT = [
    "task.train_digits=[4,5,6]",
    "task.eval_digits=[4,5,6,7]",
    "task.n_train=200",
    "params.k=12",
    "training.steps=360",
    "training.warmup_ratio=0.1",
    "training.scheduler=warmup_stable_decay",
    "sampling.max_new_tokens=112",
]


def sampled(run_dir: Path) -> int:
    """Completions the run sampled for training (eval samples excluded)."""
    return sum(
        sum(1 for _ in f.open())
        for pattern in ("samples.jsonl", "rationalize.jsonl")
        for f in run_dir.glob(f"*/{pattern}")
    )


def row(label: str, rows: list[list[dict]], rnd: int, dirs: list[Path]) -> str:
    accs = " | ".join(spread([r[rnd]["accuracy"][d] for r in rows]) for d in DIGITS)
    records = spread([r[rnd].get("train_records", 0) for r in rows], "{:.0f}") if rnd else ""
    samples = spread([sampled(d) for d in dirs], "{:.0f}") if rnd else ""
    return f"| {label} | {rnd} | {accs} | {records} | {samples} |"


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-reasoning")
    args = ap.parse_args()
    lines = [
        f"seeds {args.seeds}; held-out greedy accuracy, mean ± sd",
        "",
        "| system | round | "
        + " | ".join(f"{d} digits" for d in DIGITS)
        + " | train records | samples drawn (whole run) |",
        "|---|---|" + "---|" * (len(DIGITS) + 2),
    ]
    runs: dict[str, tuple[list[list[dict]], list[Path]]] = {}

    def system(label: str, config: str | Path, name: str, overrides: list[str]) -> None:
        dirs = [args.out / f"{name}-s{s}" for s in args.seeds]
        runs[label] = ([run(config, d, s, overrides) for d, s in zip(dirs, args.seeds)], dirs)

    system("STaR, no rationalization", DEMO, "star-norat", ["params.rationalize=false"])
    system("STaR, rationalization", DEMO, "star-rat", [])
    system("RFT, dedup", "rft.yaml", "rft-dedup", [*RFT, "params.dedup=farthest"])
    cap = min(r[1]["train_records"] for r in runs["RFT, dedup"][0])
    system(
        f"RFT, no dedup, {cap} records",
        "rft.yaml",
        "rft-nodedup-cap",
        [*RFT, "params.dedup=none", f"params.max_records={cap}"],
    )
    system("RFT, no dedup, all records", "rft.yaml", "rft-nodedup", [*RFT, "params.dedup=none"])

    lines.append(row("base (arith-tiny)", runs["STaR, rationalization"][0], 0, []))
    for label, (rows, dirs) in runs.items():
        lines += [row(label, rows, rnd, dirs) for rnd in range(1, min(len(r) for r in rows))]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
