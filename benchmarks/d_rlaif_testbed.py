"""d-RLAIF (Lee et al. 2024) on the gold-reward testbed: PPO from letters-sft (`configs/ppo_letters.yaml`, one round)
with an LLM judge's rating as the reward, against PPO on the gold reward itself and on distilled reward models
(RLAIF's canonical form: an RM trained on 1,000 labelled pairs, `configs/rlaif_letters.yaml params.mode=distilled`,
labelled by gold or by the K = 2000 EFT pairwise judge).

The judge is letters-sft after evaluation fine-tuning (EFT) on K of its own samples rated by gold: the gold reward
(a share in [0, 1]) mapped to the nearest of five labels a..e = ratings 1..5 (`scoring.pairwise.rating_records`).
Its reward is the expected rating, mapped to [-1, 1]. Per K and seed: the judge's accuracy on the testbed's
held-out gold pairs (does it rate the gold-chosen response higher?), and the PPO policy's gold reward and win rate
over letters-sft.

    python benchmarks/d_rlaif_testbed.py --seeds 0 1 2 --out runs/bench-d-rlaif
"""

from __future__ import annotations

from pathlib import Path

import torch
from common import markdown_table, run, slug, spread, testbed_parser

from selfalign.config import LettersTaskConfig, TrainingConfig
from selfalign.generation import SamplingParams, make_sampler
from selfalign.models import load
from selfalign.scoring.pairwise import PointwiseJudge, rating_records
from selfalign.tasks.letters import LettersTask
from selfalign.training.trainer import train_sft

LABELS, VALUES = ["a", "b", "c", "d", "e"], [1.0, 2.0, 3.0, 4.0, 5.0]
TEMPLATE = "{prompt}{response}:"
JUDGE = [f"params.judge.labels={LABELS}", f"params.judge.values={VALUES}", f"params.judge.template='{TEMPLATE}'"]
PPO = ["params.rounds=1"]
EFT_2000 = ["params.eft_pairs=2000", "params.eft_prompts=3000", "params.eft_steps=375"]  # as rlaif_testbed.py
DISTILLED = {
    "gold labels": ["params.labeller=gold", "params.eft_pairs=0", "params.eft_prompts=0"],
    "EFT judge K = 2000, soft labels": EFT_2000,
    "EFT judge K = 2000, hard labels": [*EFT_2000, "params.soft=false"],
}
CONFIG = "ppo_letters.yaml"


def eft_judge(out: Path, k: int, seed: int) -> Path:
    """letters-sft fine-tuned to rate K of its own samples (T=1.0, on pool prompts from the end) as gold does."""
    if (out / "config.json").is_file():
        return out
    task = LettersTask(LettersTaskConfig(name="letters", n_prompts=4000, n_eval=200))
    problems = task.unlabelled()[-k:]
    sampler = make_sampler("hf", load("policy", "builtin:letters-sft"), 1024)
    gens = sampler.generate(
        [q.prompt for q in problems], SamplingParams(n=1, temperature=1.0, max_new_tokens=16, seed=seed)
    )
    samples = [
        {
            "prompt": problems[g.prompt_index].prompt,
            "completion": g.text,
            "reward": task.check(problems[g.prompt_index], g.text).score,
        }
        for g in gens
    ]
    torch.manual_seed(seed)
    cfg = TrainingConfig(lr=5e-4, steps=max(60, 3 * k // 64), batch_size=64, warmup_ratio=0.1, scheduler="cosine")
    train_sft(
        load("policy", "builtin:letters-sft"), rating_records(samples, TEMPLATE, LABELS, VALUES), cfg, out, seed=seed
    )
    return out


def pair_accuracy(judge_dir: Path) -> float:
    """Share of held-out gold pairs whose chosen response the judge rates higher (ties count half)."""
    pairs = LettersTask(LettersTaskConfig(name="letters", n_eval=200)).eval_pairs()
    judge = PointwiseJudge(load("policy", str(judge_dir)), TEMPLATE, LABELS, VALUES)
    prompts = [p["prompt"] for p in pairs]
    chosen = judge.ratings(prompts, [p["chosen"] for p in pairs])
    rejected = judge.ratings(prompts, [p["rejected"] for p in pairs])
    wins = [0.5 if c["score"] == r["score"] else float(c["score"] > r["score"]) for c, r in zip(chosen, rejected)]
    return sum(wins) / len(wins)


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-d-rlaif")
    ap.add_argument("--ks", type=int, nargs="+", default=[200, 2000], help="EFT sizes: gold-rated samples")
    args = ap.parse_args()
    table = []

    def row(name: str, runs: list[list[dict]], accuracy: list[float] | None = None) -> None:
        gold = spread([r[-1]["gold_reward"] for r in runs], "{:.3f}")
        table.append([name, spread(accuracy) if accuracy else "", gold, spread([r[-1]["win_rate"] for r in runs])])

    for whiten in (False, True):
        extra, tag, suffix = (
            (["params.whiten_rewards=true"], ", whitened rewards", "-whitened") if whiten else ([], "", "")
        )
        gold = [*PPO, *extra, "params.scorer=gold", "params.scorer_path=null"]
        row(f"gold reward (oracle){tag}", [run(CONFIG, args.out / f"gold{suffix}-s{s}", s, gold) for s in args.seeds])
        for k in args.ks:
            accuracy, runs = [], []
            for s in args.seeds:
                judge = eft_judge(args.out / f"judge-k{k}-s{s}", k, s)
                accuracy.append(pair_accuracy(judge))
                scorer = [*PPO, *extra, "params.scorer=judge", f"params.scorer_path={judge}", *JUDGE]
                runs.append(run(CONFIG, args.out / f"judge-k{k}-ppo{suffix}-s{s}", s, scorer))
            row(f"EFT judge, K = {k}{tag}", runs, accuracy)
    for name, labeller in DISTILLED.items():
        accuracy, runs = [], []
        for s in args.seeds:
            labels = run(
                "rlaif_letters.yaml", args.out / f"rm-{slug(name)}-s{s}", s, ["params.mode=distilled", *labeller]
            )
            accuracy.append(labels[1]["accuracy"]["held-out pairs"])
            rm = args.out / f"rm-{slug(name)}-s{s}" / "round-001" / "reward_model"
            runs.append(run(CONFIG, args.out / f"rm-{slug(name)}-ppo-s{s}", s, [*PPO, f"params.scorer_path={rm}"]))
        row(f"distilled RM, {name}", runs, accuracy)
    start = spread([r[0]["gold_reward"] for r in runs], "{:.3f}")
    print(f"\nPPO, one round (letters-sft: gold reward {start})\n")
    header = ["reward", "judge or RM accuracy on held-out gold pairs", "gold reward", "win rate vs SFT"]
    print(markdown_table(header, table))


if __name__ == "__main__":
    main()
