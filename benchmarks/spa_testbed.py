"""SPA against its baselines on the gold-reward testbed (3% gold seed, 3 iterations), over seeds.

Every system is a `selfalign run configs/spa_letters.yaml` with overrides, so all share the seed
DPO (round 1 = DPO on the seed alone), the prompt chunks and the evaluation:
- iterative DPO judged by a reward model trained on the same 120 seed pairs (external RM judge);
- iterative DPO judged by the model itself as a pairwise LLM judge, both orders averaged, after learning to judge
  from the same 120 seed pairs (60 SFT steps, as the RM) at each iteration;
- SPA without refinement (self-annotation and expansion only);
- SPA with refinement but without de-coupled noise detection (lambda 0);
- full SPA (refinement + DND, lambda 1/2, 1/4, 1/8).
Per system and round: gold win rate vs SFT, the judge's accuracy against the hidden gold labels
(pairs where gold ties are left out) and mean response tokens.

    python benchmarks/spa_testbed.py --seeds 0 1 2 --out runs/bench-spa
"""

from __future__ import annotations

from pathlib import Path

from common import run, spread, testbed_parser

from selfalign.config import LettersTaskConfig
from selfalign.models.loading import load_policy
from selfalign.recipes.spa import SpaParams
from selfalign.scoring.pairwise import PairwiseJudge
from selfalign.tasks.letters import LettersTask

SYSTEMS = {
    "iterative DPO, RM judge": lambda rm: ["params.judge=rm", f"params.judge_model={rm}", "params.refine=false"],
    "iterative DPO, self-judge": lambda rm: ["params.judge=self", "params.judge_steps=60", "params.refine=false"],
    "SPA, no refinement": lambda rm: ["params.refine=false"],
    "SPA, refinement without DND": lambda rm: ["params.lambdas=[0]"],
    "SPA (refinement + DND)": lambda rm: [],
}


def self_judge_accuracy(run_dir: Path) -> float:
    """How often iteration 1's self-judge prefers the gold-chosen response of a held-out gold pair."""
    params = SpaParams.model_validate({})  # the runs use the default judge prompt and verdict labels
    judge = PairwiseJudge(load_policy(str(run_dir / "round-002" / "judge")), params.judge_template, params.judge_labels)
    pairs = LettersTask(LettersTaskConfig(name="letters", n_eval=200)).eval_pairs()
    chosen, rejected = [p["chosen"] for p in pairs], [p["rejected"] for p in pairs]
    prefs = judge.preferences([p["prompt"] for p in pairs], chosen, rejected)
    return sum(p > 0.5 for p in prefs) / len(prefs)


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-spa")
    ap.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS), help="a subset to run")
    args = ap.parse_args()
    rm_acc = []
    for s in args.seeds:  # the external judge: a reward model on the same 120 seed pairs
        rows = run("reward_letters.yaml", args.out / f"rm-seed-s{s}", s, ["params.data=seed", "training.steps=60"])
        rm_acc.append(rows[1]["accuracy"]["held-out pairs"])
    results: dict[str, list[list[dict]]] = {}
    for label in args.systems:
        overrides, results[label] = SYSTEMS[label], []
        for s in args.seeds:
            rm = args.out / f"rm-seed-s{s}"
            name = label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "").replace("+", "and")
            results[label].append(
                run("spa_letters.yaml", args.out / f"{name}-s{s}", s, overrides(rm / "round-001" / "checkpoint"))
            )
    judged = "iterative DPO, self-judge" in results
    self_acc = [self_judge_accuracy(args.out / f"iterative_DPO_self-judge-s{s}") for s in args.seeds if judged]
    first = next(iter(results.values()))
    lines = [
        f"seeds {args.seeds}; mean ± sd. Round 1 (DPO on the 120-pair seed) is shared by every system:",
        f"win rate {spread([r[1]['win_rate'] for r in first])}, mean tokens "
        f"{spread([r[1]['mean_tokens'] for r in first], '{:.2f}')} "
        f"(SFT {spread([r[0]['mean_tokens'] for r in first], '{:.2f}')}).",
        f"Accuracy on the 200 held-out gold pairs of the seed reward model: {spread(rm_acc)}"
        + (f"; of iteration 1's self-judge, both orders averaged: {spread(self_acc)}." if judged else "."),
        "",
        "| system | round | win rate vs SFT | annotation accuracy | mean tokens |",
        "|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        for t in range(2, len(rows[0])):
            lines.append(
                f"| {label} | {t} (iteration {t - 1}) | {spread([r[t]['win_rate'] for r in rows])} | "
                f"{spread([r[t]['annotation_accuracy'] for r in rows])} | "
                f"{spread([r[t]['mean_tokens'] for r in rows], '{:.2f}')} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
