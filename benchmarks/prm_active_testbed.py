"""PRM active learning against random selection at equal label budgets (configs/prm_active.yaml), one run per seed,
each with its own generator pi_sft (arith-tiny fine-tuned on 32 gold 5-digit scratchpads with that seed).

Per budget (solutions step-labelled so far): each PRM's AUC on the test samples (correct against incorrect, by
the product of step scores), first-error accuracy and step AUC against the checker, and best-of-N at N = n; at the
last budget, the best-of-N curves of majority vote, the ORM (trained on the whole pool) and both PRMs.

    python benchmarks/prm_active_testbed.py --seeds 0 1 2 --out runs/bench-prm-active
"""

from __future__ import annotations

from common import build_pi_sft_arith5, markdown_table, run, spread, testbed_parser


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-prm-active")
    ap.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. params.budget=100")
    args = ap.parse_args()
    runs = []
    for s in args.seeds:
        generator = build_pi_sft_arith5(args.out / f"pi-sft-s{s}", s)
        runs.append(run("prm_active.yaml", args.out / f"al-s{s}", s, [f"model.path={generator}", *args.overrides]))
    n = max(int(k) for k in runs[0][0]["best_of_n"]["majority vote"])
    verifiers = list(runs[0][-1]["prm_quality"])

    table = []
    for t in range(1, len(runs[0])):
        rows = [r[t] for r in runs]
        for v in verifiers:
            table.append(
                [
                    str(rows[0]["labelled_solutions"]),
                    v,
                    spread([r["verifier_auc"][v] for r in rows], "{:.3f}"),
                    spread([r["prm_quality"][v]["first_error_accuracy"] for r in rows]),
                    spread([r["prm_quality"][v]["step_auc"] for r in rows], "{:.3f}"),
                    spread([r["best_of_n"][f"{v} (product)"][str(n)] for r in rows]),
                    spread([r["best_of_n"][f"{v} (min)"][str(n)] for r in rows]),
                ]
            )
    header = ["labelled solutions", "PRM", "AUC", "first-error accuracy", "step AUC", f"best-of-{n} (product)"]
    print(markdown_table([*header, f"best-of-{n} (min)"], table))

    last = [r[-1] for r in runs]
    methods = ["pass@k (oracle)", "majority vote", "orm", *(f"{v} (product)" for v in verifiers)]
    ks = list(last[0]["best_of_n"]["majority vote"])
    curves = [[m, *(spread([r["best_of_n"][m][k] for r in last]) for k in ks)] for m in methods]
    print("\n" + markdown_table(["selection", *(f"N={k}" for k in ks)], curves))
    print(f"\nORM AUC: {spread([r['verifier_auc']['orm'] for r in last], '{:.3f}')}")


if __name__ == "__main__":
    main()
