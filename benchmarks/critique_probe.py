"""A diagnostic for the critique benchmark: pi_sft (seed 0) fine-tuned on critiques only (no answers,
critiqueability or refinements), from gold and three tampered copies (copy, carry, sum) of each of `--sums`
5-digit sums; then its greedy critiques of 200 held-out tampered solutions and 50 gold ones, and of the first 100
tampered ones with a highlight forced (greedy, and 4 samples at T=1.0: does any of them include the bug?).

    python benchmarks/critique_probe.py --out runs/critique-probe
    python benchmarks/critique_probe.py --critic runs/bench-critic-only/critique-s0/round-001/critic-sft \
        --temperatures 0 0.5 1      # a recipe's critic instead, its first critique at each temperature
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from common import build_pi_sft_arith5

from selfalign.config import ArithmeticTaskConfig, TrainingConfig
from selfalign.generation import SamplingParams, make_sampler
from selfalign.models import load
from selfalign.tasks import critique as cq
from selfalign.tasks.arithmetic import TAMPER_KINDS, ArithmeticTask, solution, tamper
from selfalign.training.trainer import train_sft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/critique-probe"), help="the critic is saved here")
    ap.add_argument("--sums", type=int, default=2000, help="training sums (4 solutions each)")
    ap.add_argument("--steps", type=int, default=1500, help="SFT steps at batch 64, lr 1e-3")
    ap.add_argument("--critic", type=Path, help="probe this trained critic (e.g. a critique run's critic-sft) instead")
    ap.add_argument(
        "--temperatures", type=float, nargs="+", default=[0.0], help="one unforced critique per temperature"
    )
    args = ap.parse_args()
    if args.critic and not (args.critic / "config.json").is_file():
        ap.error(f"--critic {args.critic}: not a saved model (no config.json)")
    torch.set_flush_denormal(True)
    task = ArithmeticTask(ArithmeticTaskConfig(train_digits=[5], eval_digits=[5], n_train=args.sums, n_eval=200))
    critic = args.critic or args.out / "critic"
    if not (critic / "config.json").is_file():
        rng = random.Random(0)
        records = []
        for q in task.train_problems(1, 0):
            for s in [solution(q)] + [" ".join(tamper(q, rng, k)[0]) for k in TAMPER_KINDS]:
                records.append({"prompt": cq.critique_prompt(q, s), "completion": cq.reference_critique(q, s.split())})
        torch.manual_seed(0)
        policy = load("policy", str(build_pi_sft_arith5(args.out / "pi-sft-s0", 0)))
        cfg = TrainingConfig(
            lr=1e-3, steps=args.steps, batch_size=64, warmup_ratio=0.1, scheduler="warmup_stable_decay"
        )
        train_sft(policy, records, cfg, critic, seed=0)
    sampler = make_sampler("hf", load("policy", str(critic)), 256)
    test = task.eval_sets()["5"]
    trng = random.Random(5)
    tampered = [(q, " ".join(tamper(q, trng)[0])) for q in test]

    def critiques(sols: list, n: int, temperature: float, forced: bool) -> list[dict]:
        prompts = [cq.critique_prompt(q, s) for q, s in sols]
        params = SamplingParams(n=n, temperature=temperature, max_new_tokens=32 if forced else 96, seed=1)
        gens = sampler.generate(prompts, params, prefills=[cq.OPEN] * len(sols) if forced else None)
        texts = [cq.OPEN + g.text.split(cq.OPEN)[0].rstrip() if forced else g.text for g in gens]
        return [cq.grade(*sols[g.prompt_index][:1], sols[g.prompt_index][1].split(), t) for g, t in zip(gens, texts)]

    def show(name: str, grades: list[dict]) -> None:
        print(name, {k: round(v, 3) for k, v in cq.critique_metrics(grades).items()})

    mixed = tampered + [(q, solution(q)) for q in test[:50]]
    for t in args.temperatures:
        show(f"T={t:g}, 200 tampered + 50 gold:", critiques(mixed, 1, t, False))
    if args.critic:
        return
    show("forced highlight, greedy, 100 tampered:", critiques(tampered[:100], 1, 0.0, True))
    grades = critiques(tampered[:100], 4, 1.0, True)
    show("forced highlight, 4 samples at T=1.0:", grades)
    print(
        "any of the 4 includes the bug:", sum(any(g["cbi"] for g in grades[i : i + 4]) for i in range(0, 400, 4)) / 100
    )


if __name__ == "__main__":
    main()
