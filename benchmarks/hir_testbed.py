"""HIR against rejection sampling at an equal number of samples (one per training sum and round, T=1.0), both
continuing from the previous round's model with the same optimisation (configs/hir.yaml), on 5-digit sums:

- `arith-tiny`: from builtin:arith-tiny (trained on 1-4 digit sums; under 1% on 5 digits), the issue's setting;
- `pi-sft`: from pi_sft (arith-tiny fine-tuned on 32 gold 5-digit scratchpads; about 26% greedy), where samples
  are both right and wrong often enough for either method to learn.

    python benchmarks/hir_testbed.py --seeds 0 1 2 --out runs/bench-hir
"""

from __future__ import annotations

from common import build_pi_sft_arith5, markdown_table, run, spread, testbed_parser

# method: (config, overrides, run name)
METHODS = {
    "HIR": ("hir.yaml", [], "hir"),
    "HIR, no label smoothing": ("hir.yaml", ["params.label_smoothing=0"], "hir-nols"),
    "rejection sampling": ("rejection_arith5.yaml", [], "rs"),
}


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-hir")
    ap.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. params.rounds=5")
    args = ap.parse_args()
    results: dict[tuple[str, str], list[list[dict]]] = {}
    for s in args.seeds:
        starts = {"arith-tiny": "builtin:arith-tiny", "pi-sft": str(build_pi_sft_arith5(args.out / f"pi-sft-s{s}", s))}
        for setting, model in starts.items():
            for method, (config, extra, short) in METHODS.items():
                rows = run(
                    config, args.out / f"{setting}-{short}-s{s}", s, [f"model.path={model}", *extra, *args.overrides]
                )
                results.setdefault((setting, method), []).append(rows)

    rounds = len(next(iter(results.values()))[0])
    table = []
    for (setting, method), runs in results.items():
        acc = [spread([r[t]["accuracy"]["5"] for r in runs]) for t in range(rounds)]
        kept = spread([r[-1]["train_records"] for r in runs], "{:.0f}")
        table.append([setting, method, *acc, kept])
    header = ["start", "method", *(f"round {t}" for t in range(rounds)), "training records, last round"]
    print("greedy 5-digit accuracy on 100 held-out sums\n\n" + markdown_table(header, table))


if __name__ == "__main__":
    main()
