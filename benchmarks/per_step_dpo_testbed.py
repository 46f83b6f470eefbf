"""Per-step DPO against RFT and plain DPO at equal numbers of synthetic problems (issue: per-step DPO).

pi_sft (one per seed): `builtin:arith-tiny` (1-4 digit sums) fine-tuned for 30 steps (lr 1e-3) on the gold
scratchpads of 32 5-digit sums, the paper's SFT on synthetic positives. From it, on N fresh 5-digit problems with
8 samples each at T=0.7 (`configs/per_step_dpo.yaml`), every method trains 30 steps x 32 at lr 1e-4:
- per-step DPO (N up to 512): each incorrect sample cut after its critical step (5 best-of-K rollouts per step
  prefix) against a correct sample of the same problem;
- per-step DPO + NLL: the same pairs with iterative RPO's loss (DPO + the chosen responses' NLL), a diagnostic for
  the chosen responses' falling likelihood;
- plain DPO: (correct, incorrect) whole samples, the same pairs uncut;
- RFT (N up to 1,024): SFT on the correct samples (`configs/rft.yaml` with the settings above, no dedup: every
  correct sample).
Held-out: 200 5-digit sums, greedy. k = how many times more problems RFT needs to match per-step DPO on N: per-step
DPO's accuracy read off RFT's accuracy-vs-log(N) curve (linear interpolation; inf when it is above all of it).

    python benchmarks/per_step_dpo_testbed.py --seeds 0 1 2 --out runs/bench-per-step-dpo
    python benchmarks/per_step_dpo_testbed.py --sft-only          # just pi_sft, to runs/pi-sft-arith5
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from common import build_pi_sft_arith5, run, spread, testbed_parser

from selfalign.records import read_jsonl

SIZES = [32, 64, 128, 256]  # plain DPO's; per-step DPO adds 512, RFT 512 and 1024
ALL_SIZES = [*SIZES, 512, 1024]
BETA = 0.1  # configs/per_step_dpo.yaml
METHODS = {  # label: (run directory prefix, sizes N, config, overrides)
    "per-step DPO": ("perstep", [*SIZES, 512], "per_step_dpo.yaml", []),
    "per-step DPO + NLL (RPO)": ("perstep-nll", [*SIZES, 512], "per_step_dpo.yaml", ["preference.loss=dpo_nll"]),
    "plain DPO (whole solutions)": ("plain", SIZES, "per_step_dpo.yaml", ["params.pairs=whole"]),
    "RFT": (
        "rft",
        ALL_SIZES,
        "rft.yaml",
        [
            *(f"task.{k}" for k in ("train_digits=[5]", "eval_digits=[5]", "n_eval=200")),
            *(f"training.{k}" for k in ("lr=1e-4", "steps=30", "batch_size=32")),
            "params.dedup=none",
        ],
    ),
}


def multiplier(acc: float, curve: list[tuple[int, float]], n: int) -> float:
    """k such that RFT on k*n problems reaches `acc`, by linear interpolation in log N (inf above the curve, 0
    below it)."""
    for (n0, a0), (n1, a1) in zip(curve, curve[1:]):
        if a0 <= acc <= a1 and a1 > a0:
            return math.exp(math.log(n0) + (acc - a0) / (a1 - a0) * math.log(n1 / n0)) / n
    return math.inf if acc > max(a for _, a in curve) else 0.0


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-per-step-dpo")
    ap.add_argument("--sft-only", action="store_true", help="build pi_sft for seed 0 in runs/pi-sft-arith5 and stop")
    args = ap.parse_args()
    if args.sft_only:
        print(build_pi_sft_arith5(Path("runs/pi-sft-arith5"), 0))
        return
    acc: dict[str, dict[int, list[float]]] = {m: {} for m in METHODS}
    chosen: dict[str, dict[int, list[float]]] = {m: {} for m in METHODS if m != "RFT"}
    base = []
    for s in args.seeds:
        sft = build_pi_sft_arith5(args.out / f"pi-sft-s{s}", s)
        for method, (name, sizes, config, extra) in METHODS.items():
            for n in sizes:
                out = args.out / f"{name}-n{n}-s{s}"
                rows = run(config, out, s, [f"model.path={sft}", f"task.n_train={n}", *extra])
                acc[method].setdefault(n, []).append(rows[-1]["accuracy"]["5"])
                if method == "RFT" and n == SIZES[0]:
                    base.append(rows[0]["accuracy"]["5"])
                if method in chosen:
                    log = read_jsonl(out / "round-001" / "checkpoint" / "train_log.jsonl")[-5:]
                    chosen[method].setdefault(n, []).append(statistics.mean(e["rewards/chosen"] for e in log) / BETA)
    print(f"seeds {args.seeds}; held-out greedy accuracy on 200 5-digit sums, mean ± sd; pi_sft: {spread(base)}\n")
    print("| method | " + " | ".join(f"N={n}" for n in ALL_SIZES) + " |")
    print("|---|" + "---|" * len(ALL_SIZES))
    for method, by_n in acc.items():
        print(f"| {method} | " + " | ".join(spread(by_n[n]) if n in by_n else "" for n in ALL_SIZES) + " |")
    print("\nlog pi(y+) - log pi_SFT(y+) of the chosen responses at the end of training (nats, last 5 steps):\n")
    print("| method | " + " | ".join(f"N={n}" for n in ALL_SIZES[:-1]) + " |")
    print("|---|" + "---|" * (len(ALL_SIZES) - 1))
    for method, by_n in chosen.items():
        print(
            f"| {method} | " + " | ".join(spread(by_n[n], "{:.1f}") if n in by_n else "" for n in ALL_SIZES[:-1]) + " |"
        )
    print(f"\nk (RFT needs k x N problems to match; below RFT's N={ALL_SIZES[0]} point: < {ALL_SIZES[0]}/N), per seed:")
    for method in chosen:
        sizes = sorted(acc[method])
        ks = [
            [multiplier(acc[method][n][i], [(m, acc["RFT"][m][i]) for m in ALL_SIZES], n) for n in sizes]
            for i in range(len(args.seeds))
        ]
        shown = lambda k, n: f"< {ALL_SIZES[0] / n:.2g}" if k == 0 else f"{k:.2g}"  # noqa: E731
        print(
            f"- {method}: " + "; ".join(f"N={n}: " + ", ".join(shown(k[j], n) for k in ks) for j, n in enumerate(sizes))
        )


if __name__ == "__main__":
    main()
