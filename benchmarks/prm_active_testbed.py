"""PRM active learning against random selection at equal label budgets (configs/prm_active.yaml), one run per seed,
each with its own generator pi_sft (arith-tiny fine-tuned on 32 gold 5-digit scratchpads with that seed).

Per budget (solutions step-labelled so far): each PRM's AUC on the test samples (correct against incorrect, by
the product of step scores), first-error accuracy and step AUC against the checker, and best-of-N at N = n; at the
last budget, the best-of-N curves of majority vote, the ORM (trained on the whole pool) and both PRMs.

    python benchmarks/prm_active_testbed.py --seeds 0 1 2 --out runs/bench-prm-active
"""

from __future__ import annotations

from collections import Counter

from common import markdown_table, pi_sft_runs, spread, testbed_parser
from verifier_fit import error_kind

from selfalign.records import read_jsonl


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-prm-active")
    ap.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. params.budget=100")
    args = ap.parse_args()
    runs = pi_sft_runs("prm_active.yaml", args.out, "al", args.seeds, args.overrides)
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

    # what each arm labelled: the kind of each solution's first error
    rounds = len(runs[0]) - 1
    kinds = {v: Counter() for v in verifiers}
    for s in args.seeds:
        for v in verifiers:
            for r in read_jsonl(args.out / f"al-s{s}" / f"round-{rounds:03d}" / f"{v}.jsonl"):
                first = next((i for i, good in enumerate(r["labels"]) if not good), None)
                kinds[v][
                    error_kind(r["prompt"], r["completions"], first) if first is not None else "no step labelled wrong"
                ] += 1
    names = sorted({k for c in kinds.values() for k in c}, key=lambda k: -kinds[verifiers[0]][k])
    share = [[v, *(f"{kinds[v][k] / sum(kinds[v].values()):.1%}" for k in names)] for v in verifiers]
    print("\nfirst error of the labelled solutions (all seeds)\n" + markdown_table(["PRM", *names], share))


if __name__ == "__main__":
    main()
