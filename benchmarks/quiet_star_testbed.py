"""Quiet-STaR against the same model trained without thoughts, on text that states 3-digit sums directly
(issue: per-step DPO and Quiet-STaR).

From `builtin:arith-tiny` (1-4 digit sums with a scratchpad; it has never seen an answer stated directly), each run
trains on 2,000 texts, half "<prompt>?<answer, units digit first>" and half worked sums (`configs/quiet_star.yaml`:
100 steps x 16 texts, lr 1e-4, 2 thoughts per position, 4 teacher-forced tokens, the official loss weights).
Systems: thoughts of t = 4 and 12 tokens; t = 12 with the REINFORCE term weighted 1 instead of the official 1e6;
no thoughts for the same 100 steps; no thoughts for the compute of t = 12 (a Quiet-STaR step runs
n_thoughts x (t + 2 + n_talk) forward passes over the text, an LM step one: 36x the steps).
Held-out: 100 direct 3-digit sums: NLL of the answer digits, exact match of the greedy answer (a greedy thought
before each token), seconds per generated token.

    python benchmarks/quiet_star_testbed.py --seeds 0 1 2 --out runs/bench-quiet-star
"""

from __future__ import annotations

from common import run, slug, spread, testbed_parser

STEPS, N_THOUGHTS, N_TALK = 100, 2, 4
SYSTEMS = {
    "no thoughts, same steps": ["params.thought_tokens=0"],
    "no thoughts, compute of t=12": [
        "params.thought_tokens=0",
        f"training.steps={STEPS * N_THOUGHTS * (12 + 2 + N_TALK)}",
    ],
    "Quiet-STaR t=4": ["params.thought_tokens=4"],
    "Quiet-STaR t=12": ["params.thought_tokens=12"],
    "Quiet-STaR t=12, REINFORCE weight 1": ["params.thought_tokens=12", "params.policy_weight=1"],
}


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-quiet-star")
    args = ap.parse_args()
    lines = [
        f"seeds {args.seeds}; 100 held-out direct 3-digit sums, mean ± sd",
        "",
        "| system | answer-digit NLL | exact match (greedy) | seconds per answer token | vs no thoughts |",
        "|---|---|---|---|---|",
    ]
    base = None
    for label, overrides in SYSTEMS.items():
        name = slug(label)
        rows = [run("quiet_star.yaml", args.out / f"{name}-s{s}", s, overrides) for s in args.seeds]
        if base is None:
            base = rows
            lines.insert(
                4,
                f"| arith-tiny (start) | {spread([r[0]['answer_nll'] for r in rows], '{:.2f}')} | "
                f"{spread([r[0]['accuracy']['direct'] for r in rows])} | "
                f"{spread([r[0]['seconds_per_token'] * 1e3 for r in rows], '{:.2f}')} ms | |",
            )
        cost = [r[-1]["seconds_per_token"] / b[-1]["seconds_per_token"] for r, b in zip(rows, base)]
        lines.append(
            f"| {label} | {spread([r[-1]['answer_nll'] for r in rows], '{:.2f}')} | "
            f"{spread([r[-1]['accuracy']['direct'] for r in rows])} | "
            f"{spread([r[-1]['seconds_per_token'] * 1e3 for r in rows], '{:.2f}')} ms | {spread(cost, '{:.1f}x')} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
