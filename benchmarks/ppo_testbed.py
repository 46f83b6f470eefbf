"""PPO-RLHF on the gold-reward testbed (letters): a sweep of the KL coefficient beta, over seeds (issue: online RL).

Per seed, a reward model is trained on the testbed's gold pairs (`configs/reward_letters.yaml`); PPO then optimises
it from `builtin:letters-sft` (`configs/ppo_letters.yaml`: 2 rounds x 25 rollouts of 128 responses, 4 epochs x 2
minibatches, k1 KL in the reward at a fixed beta). The held-out gold reward and win rate against the SFT model say
whether optimising the RM helped the hidden objective; the RM reward and the KL to the SFT model over the last 25
steps of round 2, against that gold reward, are the over-optimisation curve (Gao et al. 2023). An oracle row trains
on the gold reward itself.

    python benchmarks/ppo_testbed.py --seeds 0 1 2 --out runs/bench-ppo
"""

from __future__ import annotations

import statistics

from common import run, spread, testbed_parser

from selfalign.records import read_jsonl

BETAS = [0.0, 0.01, 0.05, 0.2]


def tail(run_dir, key: str, last: int = 25) -> float:
    """Mean of a per-step training quantity over round 2's last steps."""
    log = read_jsonl(run_dir / "round-002" / "checkpoint" / "train_log.jsonl")
    return statistics.mean(e[key] for e in log[-last:])


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-ppo")
    ap.add_argument("--betas", type=float, nargs="+", default=BETAS, help="fixed KL coefficients to sweep")
    args = ap.parse_args()
    rm_acc, systems = [], {}
    for s in args.seeds:
        rows = run("reward_letters.yaml", args.out / f"rm-s{s}", s, [])
        rm_acc.append(rows[1]["accuracy"]["held-out pairs"])
    for beta in args.betas:
        systems[f"PPO, RM reward, beta {beta:g}"] = [
            (args.out / f"ppo-rm-beta{beta:g}-s{s}", [f"params.kl_coef={beta}", f"params.scorer_path={rm(args, s)}"])
            for s in args.seeds
        ]
    systems["PPO, gold reward (oracle), beta 0.05"] = [
        (args.out / f"ppo-gold-s{s}", ["params.scorer=gold", "params.scorer_path=null"]) for s in args.seeds
    ]
    lines = [
        f"seeds {args.seeds}; mean ± sd. Reward models: {spread(rm_acc)} accuracy on the 200 held-out gold pairs.",
        "",
        "| system | round | held-out gold reward | win rate vs SFT | mean tokens | train reward (last 25 steps) |"
        " KL to SFT (last 25 steps) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, runs in systems.items():
        rows = [run("ppo_letters.yaml", out, s, overrides) for (out, overrides), s in zip(runs, args.seeds)]
        dirs = [out for out, _ in runs]
        for t in range(len(rows[0])):
            last = t == len(rows[0]) - 1
            lines.append(
                f"| {label} | {t} | {spread([r[t]['gold_reward'] for r in rows], '{:.3f}')} | "
                + (f"{spread([r[t]['win_rate'] for r in rows])} | " if t else "| ")
                + f"{spread([r[t]['mean_tokens'] for r in rows], '{:.2f}')} | "
                + (f"{spread([tail(d, 'reward') for d in dirs], '{:.3f}')} | " if last else "| ")
                + (f"{spread([tail(d, 'kl') for d in dirs], '{:.2f}')} |" if last else "|")
            )
    print("\n".join(lines))


def rm(args, seed: int) -> str:
    return str(args.out / f"rm-s{seed}" / "round-001" / "checkpoint")


if __name__ == "__main__":
    main()
