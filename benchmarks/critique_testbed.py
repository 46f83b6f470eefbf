"""Critics on 5-digit sums (configs/critique.yaml), one run per seed, each with its own pi_sft (arith-tiny
fine-tuned on 32 gold 5-digit scratchpads with that seed) as the model that answers, critiques and refines.

Tables: each critic's critiques of tampered and natural bugs (CBI, comprehensiveness, the shares with a
hallucinated highlight and with a nitpick, invalid critiques); FSBS per length modifier; refinement of the
model's own wrong answers with and without critiques; a budgeted evaluator assisted or not; critiqueability
and the GDC gap.

    python benchmarks/critique_testbed.py --seeds 0 1 2 --out runs/bench-critique
    python benchmarks/critique_testbed.py --seeds 0 1 2 --out runs/bench-critic-only params.mixture=critiques
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from common import markdown_table, pi_sft_runs, spread, testbed_parser

from selfalign.config import load_config
from selfalign.records import read_jsonl
from selfalign.tasks import make_task
from selfalign.tasks.critique import faults, grade

METRICS = ("cbi", "comprehensive", "diagnosed", "hallucination", "nitpick", "invalid", "highlights")


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-critique")
    ap.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. params.n=16")
    args = ap.parse_args()
    rows = [r[-1] for r in pi_sft_runs("critique.yaml", args.out, "critique", args.seeds, args.overrides)]

    def line(name: str, values: list[dict]) -> list[str]:
        return [name, *(spread([v[m] for v in values], "{:.2f}" if m == "highlights" else "{:.1%}") for m in METRICS)]

    for test in [t for t in ("tampered", "natural", "own") if f"sft {t}" in rows[0]["critics"]]:  # no `own` set
        table = [
            line(k.removesuffix(f" {test}"), [r["critics"][k] for r in rows])
            for k in rows[0]["critics"]
            if k.endswith(f" {test}")
        ]
        for critic in ("sft", "rs"):
            for mod in rows[0]["fsbs"][f"{critic} {test}"]:
                table.append(
                    line(f"{critic} + FSBS, modifier {mod}", [r["fsbs"][f"{critic} {test}"][mod] for r in rows])
                )
        print(f"\n{test} bugs\n" + markdown_table(["critic", *METRICS], table))

    for part in ("refinement", "assisted", "critiqueability", "gdc", "rm_ranking_accuracy"):
        if part not in rows[0]:  # self-critique and refinement need mixture=all
            continue
        values = {k: [r[part][k] for r in rows if r[part][k] is not None] for k in rows[0][part]}
        table = [[k, spread(v) if v else "n/a (no case in any seed)"] for k, v in values.items()]
        print(f"\n{part}\n" + markdown_table(["", "mean +- sd over seeds"], table))
    print(f"\ncritic RM comparisons: {spread([r['rm_pairs'] for r in rows], '{:.0f}')}")

    table = []
    for critic in ("sft", "rs"):
        hits: dict[str, list[bool]] = defaultdict(list)
        for s in args.seeds:
            for key, h in cbi_by_kind(args.out / f"critique-s{s}", critic).items():
                hits[key] += h
        table += [[critic, k, str(len(h)), f"{sum(h) / len(h):.1%}"] for k, h in sorted(hits.items())]
    print("\nCBI by the kind of critical bug (first sample, all seeds)\n")
    print(markdown_table(["critic", "test set, bug kind", "solutions", "CBI"], table))


def cbi_by_kind(run_dir: Path, critic: str) -> dict[str, list[bool]]:
    """Whether each flawed test solution's first sampled critique caught its critical bug, keyed by test set and
    the bug's kind."""
    problems = {q.id: q for qs in make_task(load_config(run_dir / "config.yaml").task).eval_sets().values() for q in qs}
    out: dict[str, list[bool]] = defaultdict(list)
    for r in read_jsonl(run_dir / "round-004" / f"test_critiques-{critic}.jsonl"):
        if not r["id"].endswith("#0"):
            continue
        q = problems[r["source"].split("/")[0].split("#")[0]]
        steps = r["prompt"][len(q.prompt) :].removesuffix(" critique ").split()
        bugs = faults(q, steps)
        if bugs:
            origin = next((o for o in ("tampered", "own") if f"/{o}" in r["source"]), "natural")
            out[f"{origin}, {bugs[min(bugs)]}"].append(grade(q, steps, r["completion"])["cbi"])
    return out


if __name__ == "__main__":
    main()
