"""Preference core on the gold-reward testbed (selfalign.tasks.letters), over several seeds.

Every row is a real `selfalign run` of the shipped configs (configs/dpo_letters.yaml,
configs/reward_letters.yaml) with the overrides shown; the run directories stay under --out.
- DPO on all gold pairs vs on the small seed alone: gold win rate against the SFT model (round 0),
  mean gold reward and mean response length on the held-out prompts.
- Reward models without and with Llama-2 margins: accuracy on the held-out gold pairs.
- Rejection sampling scored by the (no-margin) reward model: gold reward and win rate per round.

    python benchmarks/preference_testbed.py --seeds 0 1 2 --out runs/bench-preference
"""

from __future__ import annotations

from common import run, spread, testbed_parser

DPO = {
    "DPO, all 4000 gold pairs": ["params.data=all"],
    "DPO, 120-pair seed (3%), same 300 steps": ["params.data=seed"],
    "DPO, 120-pair seed (3%), 60 steps": ["params.data=seed", "training.steps=60"],
}
RM = {
    "no margin": ["params.margins=none"],
    "small margins": ["params.margins=small"],
    "large margins": ["params.margins=large"],
}


def change(rows: list[list[dict]], key: str, fmt: str) -> str:
    return f"{spread([r[0][key] for r in rows], fmt)} → {spread([r[1][key] for r in rows], fmt)}"


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-preference")
    args = ap.parse_args()
    lines = [
        f"seeds {args.seeds}; mean ± sd",
        "",
        "| DPO | win rate vs SFT | gold reward (SFT → DPO) | mean length (SFT → DPO) |",
        "|---|---|---|---|",
    ]
    for label, extra in DPO.items():
        rows = [
            run("dpo_letters.yaml", args.out / f"dpo-{'-'.join(extra)}-s{s}".replace("=", "_"), s, extra)
            for s in args.seeds
        ]
        lines.append(
            f"| {label} | {spread([r[1]['win_rate'] for r in rows])} | {change(rows, 'gold_reward', '{:.3f}')} | "
            f"{change(rows, 'mean_tokens', '{:.2f}')} |"
        )
    lines += ["", "| reward model (4000 gold pairs) | held-out pair accuracy |", "|---|---|"]
    for label, extra in RM.items():
        rows = [
            run("reward_letters.yaml", args.out / f"rm-{label.replace(' ', '_')}-s{s}", s, extra) for s in args.seeds
        ]
        lines.append(f"| {label} | {spread([r[1]['accuracy']['held-out pairs'] for r in rows])} |")
    lines += [
        "",
        "| rejection sampling, RM scorer (k=8, 2 rounds) | gold reward r0 → r1 → r2 | win rate r1 → r2 |",
        "|---|---|---|",
    ]
    rows = []
    for s in args.seeds:
        rm = args.out / f"rm-no_margin-s{s}" / "round-001" / "checkpoint"
        rows.append(
            run(
                "rejection_letters.yaml",
                args.out / f"rs-s{s}",
                s,
                [f"params.reward_models=[{{path: {rm}}}]"],
            )
        )
    lines.append(
        "| best of 8 by RM, pooled | "
        + " → ".join(spread([r[i]["gold_reward"] for r in rows], "{:.3f}") for i in range(3))
        + " | "
        + " → ".join(spread([r[i]["win_rate"] for r in rows]) for i in (1, 2))
        + " |"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
