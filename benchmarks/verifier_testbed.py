"""Verifiers and test-time selection on the arithmetic testbed (configs/vstar.yaml), over several seeds.

The generator is arith-tiny after two V-STaR iterations on 4-digit sums sampled at T=1.3; the test split is
100 held-out 4-digit sums at the same temperature, where about one sample in ten is wrong. Every verifier
(V-STaR's DPO verifier, ORM, PRM on checker step labels, PRM on Monte-Carlo step labels) is trained on the
same D_VER and scores the same 64 samples per problem; solve rates for N = 1..64 use the unbiased estimators
(best-of-k from V-STaR, votes over random subsets).

    python benchmarks/verifier_testbed.py --seeds 0 1 2 --out runs/bench-verifiers
"""

from __future__ import annotations

from common import run, spread, testbed_parser

NS = ["1", "4", "16", "64"]
QUALITY = [("step_accuracy", "{:.1%}"), ("first_error_accuracy", "{:.1%}"), ("step_auc", "{:.3f}")]


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-verifiers")
    args = ap.parse_args()
    last = [run("vstar.yaml", args.out / f"vstar-s{s}", s, [])[-1] for s in args.seeds]
    lines = [
        f"seeds {args.seeds}; solve rate on the 100 held-out test sums, mean ± sd",
        "",
        "| selection | " + " | ".join(f"N={n}" for n in NS) + " |",
        "|---|" + "---|" * len(NS),
    ]
    for method in last[0]["best_of_n"]:
        lines.append(
            f"| {method} | " + " | ".join(spread([r["best_of_n"][method][n] for r in last]) for n in NS) + " |"
        )
    lines += ["", "| verifier | AUC, correct against incorrect test samples |", "|---|---|"]
    for name in last[0]["verifier_auc"]:
        lines.append(f"| {name} | {spread([r['verifier_auc'][name] for r in last], '{:.3f}')} |")
    lines += ["", "| PRM | step-label accuracy | first-error accuracy | step AUC |", "|---|---|---|---|"]
    for name in last[0]["prm_quality"]:
        q = [r["prm_quality"][name] for r in last]
        cells = [spread([x[key] for x in q], fmt) for key, fmt in QUALITY]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    acc = [r["accuracy"] for r in last]
    lines += [
        "",
        "generator greedy accuracy: " + ", ".join(f"{d} digits {spread([a[d] for a in acc])}" for d in acc[0]),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
