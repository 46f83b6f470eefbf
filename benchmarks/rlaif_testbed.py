"""RLAIF on the gold-reward testbed (`configs/rlaif_letters.yaml`): DPO on 1,000 pairs of letters-sft's own samples
labelled by the gold reward (the RLHF analogue), by letters-sft as an off-the-shelf judge, or by judges made from it
by evaluation fine-tuning (EFT) on K gold judgements; soft or hard labels, with or without the position swap; and, as
a control, gold labels each reversed with probability q (labellers of known accuracy, unbiased noise).

Per system and seed: the labeller's accuracy against gold on the policy's pairs (swap-averaged and each order
alone), its flip rate, first-position rate and ECE; the DPO policy's gold reward and win rate over letters-sft.
Writes `quality_vs_accuracy.png` (policy win rate against labeller accuracy) into --out.

    python benchmarks/rlaif_testbed.py --seeds 0 1 2 --out runs/bench-rlaif
"""

from __future__ import annotations

import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import markdown_table, run, slug, spread, testbed_parser  # noqa: E402


def eft(k: int) -> list[str]:
    """EFT on K gold judgements, about 6 passes over the 2K records (both orders) at batch 64."""
    return [f"params.eft_pairs={k}", f"params.eft_prompts={int(1.5 * k)}", f"params.eft_steps={max(60, 12 * k // 64)}"]


SYSTEMS = {
    "gold labels (RLHF analogue)": ["params.labeller=gold"],
    "off-the-shelf judge (K = 0)": [],
    "EFT judge, K = 50": eft(50),
    "EFT judge, K = 200": eft(200),
    "EFT judge, K = 1000": eft(1000),
    "EFT judge, K = 2000": eft(2000),
    "off-the-shelf judge, hard labels": ["params.soft=false"],
    "EFT judge, K = 1000, hard labels": [*eft(1000), "params.soft=false"],
    "EFT judge, K = 2000, hard labels": [*eft(2000), "params.soft=false"],
    "EFT judge, K = 2000, hard labels, no swap": [*eft(2000), "params.soft=false", "params.swap=false"],
    "EFT judge, K = 1000, no swap": [*eft(1000), "params.swap=false"],
    # labellers of known accuracy: each gold label reversed with probability q
    **{f"gold labels, {q:.0%} flipped": ["params.labeller=gold", f"params.gold_flip={q}"] for q in (0.2, 0.3, 0.4)},
}
CONFIG = "rlaif_letters.yaml"
NO_EFT = ["params.eft_pairs=0", "params.eft_prompts=0"]
LABELLER = ("accuracy", "accuracy_a_first", "accuracy_b_first", "flip_rate", "first_position", "ece")


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-rlaif")
    ap.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS), help="a subset to run")
    args = ap.parse_args()
    results = {
        name: [run(CONFIG, args.out / f"{slug(name)}-s{s}", s, NO_EFT + SYSTEMS[name]) for s in args.seeds]
        for name in args.systems
    }
    labeller = [
        [name, *(spread([r[1]["labeller"][m] for r in rows]) if m in rows[0][1]["labeller"] else "" for m in LABELLER)]
        for name, rows in results.items()
    ]
    print("\nlabeller against gold on the policy's pairs\n" + markdown_table(["labeller", *LABELLER], labeller))
    policy = [
        [
            name,
            spread([r[1]["gold_reward"] for r in rows], "{:.3f}"),
            spread([r[1]["win_rate"] for r in rows]),
            spread([r[1]["mean_tokens"] for r in rows], "{:.2f}"),
            spread([r[1]["train_pairs"] for r in rows], "{:.0f}"),
        ]
        for name, rows in results.items()
    ]
    start = spread([rows[0]["gold_reward"] for rows in next(iter(results.values()))], "{:.3f}")
    print(f"\npolicy after DPO (letters-sft: gold reward {start})\n")
    print(markdown_table(["labeller", "gold reward", "win rate vs SFT", "mean tokens", "pairs"], policy))

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=110)
    for i, (name, rows) in enumerate(results.items()):
        xs = [100 * r[1]["labeller"]["accuracy"] for r in rows]
        ys = [100 * r[1]["win_rate"] for r in rows]
        color, marker = plt.cm.tab20(i % 20), "s" if name.startswith("gold") else "o"  # gold-based: squares
        ax.scatter(xs, ys, color=color, s=14, marker=marker)
        ax.errorbar(statistics.mean(xs), statistics.mean(ys), fmt=marker, color=color, label=name, markersize=6)
    ax.set_xlabel("labeller accuracy against gold on the policy's pairs (%)")
    ax.set_ylabel("policy win rate over letters-sft (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out / "quality_vs_accuracy.png")
    print(f"\nplot: {args.out / 'quality_vs_accuracy.png'}")


if __name__ == "__main__":
    main()
