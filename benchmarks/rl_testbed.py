"""GRPO and RLOO against STaR on 5-digit sums, at equal numbers of sampled responses, over seeds (issue: online RL).

Every system starts from the shipped `builtin:arith-tiny` (trained on 1-4 digit sums; 5-digit accuracy near 0)
and trains on fresh 5-digit sums with the checker's 1/0 as the only signal; held-out: the same 200 5-digit sums
(greedy). Each round draws 1,920 responses for training:
- GRPO: 30 steps x 64 responses (8 prompts x a group of 8) at T=1, lr 1e-4, group-normalised advantages, TRL's
  "dapo" aggregation, no KL; training continues across rounds (`configs/grpo.yaml`).
- GRPO with process supervision (DeepSeekMath 4.1.3): the same, but each step (one column of the scratchpad) is
  rewarded 1 if it is valid and comes before the first invalid one, else 0 (the checker's step labels: an oracle PRM);
  step rewards are normalised over the group and each token gets the sum of those of its step and the later ones.
- GRPO with a trained PRM (`--prm`): a PRM trained by V-STaR's pipeline on the checker's step labels of 4,000
  samples of arith-tiny on fresh 5-digit sums (`configs/vstar.yaml`, one iteration, PRM only, one per seed), as the
  outcome reward (its minimum step score) or as process supervision (its step scores).
- RLOO: the same as GRPO with the leave-one-out baseline.
- STaR (no rationalization): 1,920 problems x 1 sample at T=0.7 per round, correct ones kept, 100 steps from the
  base model +20% per round (`configs/star.yaml`, the paper's schedule).
- STaR with rationalization: the same plus a hinted retry of each failure (these retries are extra samples and are
  counted in "samples drawn").

    python benchmarks/rl_testbed.py --seeds 0 1 2 --out runs/bench-rl
    python benchmarks/rl_testbed.py --seeds 0 1 2 --out runs/bench-rl --prm --systems "GRPO, PRM outcome (min)" \
        "GRPO, PRM process supervision"
"""

from __future__ import annotations

from common import run, slug, spread, testbed_parser

from selfalign.records import read_jsonl

RECORDS = ("samples.jsonl", "rationalize.jsonl")  # what a STaR round sampled
FIVE = ["task.train_digits=[5]", "task.eval_digits=[5]", "task.n_eval=200"]
ROUNDS = 3
SYSTEMS = {
    "GRPO": ("grpo.yaml", [*FIVE, "training.steps=30", f"params.rounds={ROUNDS}"]),
    "GRPO, process supervision (checker step labels)": (
        "grpo.yaml",
        [*FIVE, "training.steps=30", f"params.rounds={ROUNDS}", "params.scorer=gold", "params.supervision=process"],
    ),
    "RLOO": ("grpo.yaml", [*FIVE, "training.steps=30", f"params.rounds={ROUNDS}", "params.algorithm=rloo"]),
    "STaR, no rationalization": (
        "star.yaml",
        [*FIVE, "task.n_train=1920", f"params.rounds={ROUNDS}", "params.rationalize=false", "params.patience=9"],
    ),
    "STaR, rationalization": (
        "star.yaml",
        [*FIVE, "task.n_train=1920", f"params.rounds={ROUNDS}", "params.patience=9"],
    ),
}


PRM = [  # V-STaR's data pipeline on 5-digit sums, reduced to the PRM on the checker's step labels
    *FIVE,
    "task.n_train=1000",
    "task.n_eval=20",
    "params.iterations=1",
    "params.verifiers=[prm]",
    "params.verifier_steps=300",
    "params.n=2",
    "params.test='5'",
]
WITH_PRM = {
    "GRPO, PRM outcome (min)": [*SYSTEMS["GRPO"][1], "params.scorer=prm", "params.aggregate=min"],
    "GRPO, PRM process supervision": [*SYSTEMS["GRPO"][1], "params.scorer=prm", "params.supervision=process"],
}


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-rl")
    choices = [*SYSTEMS, *WITH_PRM]
    ap.add_argument("--systems", nargs="+", choices=choices, default=list(SYSTEMS), help="a subset to run")
    ap.add_argument("--prm", action="store_true", help="train the PRMs the PRM systems need (one vstar run a seed)")
    args = ap.parse_args()
    prms = {}
    if args.prm:
        for s in args.seeds:
            run("vstar.yaml", args.out / f"prm-s{s}", s, PRM)
            prms[s] = next((args.out / f"prm-s{s}").glob("round-*/prm"))
    lines = [
        f"seeds {args.seeds}; held-out greedy accuracy on 200 5-digit sums, mean ± sd",
        "",
        "| system | round | training samples drawn (cumulative) | 5-digit accuracy | mean response tokens |",
        "|---|---|---|---|---|",
    ]
    for label in args.systems:
        name = slug(label)
        dirs = [args.out / f"{name}-s{s}" for s in args.seeds]
        if label in WITH_PRM:
            if not args.prm:
                ap.error(f"{label!r} needs --prm")
            runs = [("grpo.yaml", [*WITH_PRM[label], f"params.scorer_path={prms[s]}"]) for s in args.seeds]
        else:
            runs = [SYSTEMS[label]] * len(args.seeds)
        rows = [run(c, d, s, o) for (c, o), d, s in zip(runs, dirs, args.seeds)]
        for rnd in range(ROUNDS + 1):
            drawn = [sum(sampled_in(d, r) for r in range(1, rnd + 1)) for d in dirs]
            lines.append(
                f"| {label} | {rnd} | {spread(drawn, '{:.0f}')} | {spread([r[rnd]['accuracy']['5'] for r in rows])}"
                f" | {spread([r[rnd]['mean_tokens'] for r in rows], '{:.1f}')} |"
            )
    print("\n".join(lines))


def sampled_in(run_dir, rnd: int) -> int:
    """Responses a round drew for training: STaR's samples and hinted retries, GRPO's steps x responses per step."""
    round_dir = run_dir / f"round-{rnd:03d}"
    if (round_dir / "samples.jsonl").is_file():
        return sum(sum(1 for _ in (round_dir / f).open()) for f in RECORDS if (round_dir / f).is_file())
    metrics = [m for m in read_jsonl(run_dir / "metrics.jsonl") if m["round"] in (rnd - 1, rnd)]
    return metrics[-1]["samples"] - metrics[0].get("samples", 0)


if __name__ == "__main__":
    main()
