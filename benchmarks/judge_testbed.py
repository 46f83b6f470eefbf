"""AI labellers on the real-model `ifeval` testbed: SmolLM2-135M-Instruct as a pairwise judge, off the shelf and after
evaluation fine-tuning (EFT, Self-Rewarding LMs) on K gold-labelled judgements, against the gold reward (the share
of instructions a response follows).

A pair is two of SmolLM2's own responses (T=0.8) to one prompt whose gold rewards differ. EFT pool: the training
prompts of a rejection-sampling round with 8 samples per prompt; test: held-out prompts with 8 samples each (at most
`--per-prompt` pairs per prompt):

    selfalign run configs/rejection_ifeval.yaml --out runs/rs-ifeval-k8 params.rounds=1 params.k=8 \
        params.finished_only=false params.prefer_shorter=false
    selfalign eval --model builtin:smollm2-135m-instruct --config configs/rejection_ifeval.yaml --out runs/smol-pass8 \
        task.n_eval=50 sampling.max_new_tokens=256 eval.k=8 eval.temperature=0.8
    python benchmarks/judge_testbed.py --seeds 0 1 2

Per seed, K pairs are drawn from the pool and LoRA-trained in both orders (the judge's own prompt format, verdict
label = the better response's position). Per labeller: accuracy of the swap-averaged label and of each order
alone, flip rate (the winner changes when the order is swapped), first-position rate, ECE, invalid verdicts.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import torch
from common import markdown_table, spread, testbed_parser

from selfalign.config import LoraConfig, TrainingConfig
from selfalign.evaluation.metrics import judge_metrics
from selfalign.models import load
from selfalign.models.loading import load_policy
from selfalign.records import read_jsonl
from selfalign.scoring.pairwise import PairwiseJudge, judge_records
from selfalign.training.trainer import train_sft

TEMPLATE = (
    "Here is a request and two responses to it. Which response follows the request and every instruction in it "
    "more closely?\n\nRequest: {prompt}\n\nResponse 1:\n{first}\n\nResponse 2:\n{second}\n\n"
    "Answer with 1 or 2 only."
)
LABELS = ("1", "2")
MODEL = "builtin:smollm2-135m-instruct"
METRICS = ("accuracy", "accuracy_a_first", "accuracy_b_first", "flip_rate", "first_position", "ece", "invalid")


def gold_pairs(samples: list[dict]) -> dict[str, list[dict]]:
    """Per prompt, every two responses with different gold rewards, the better one as `chosen`."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in samples:
        by_prompt[r["problem_id"]].append(r)
    out: dict[str, list[dict]] = {}
    for pid, rows in by_prompt.items():
        pairs = []
        for a, b in combinations(rows, 2):
            if a["reward"] != b["reward"] and a["completion"] != b["completion"]:
                w, lo = (a, b) if a["reward"] > b["reward"] else (b, a)
                pairs.append({"prompt": a["prompt"], "chosen": w["completion"], "rejected": lo["completion"]})
        if pairs:
            out[pid] = pairs
    return out


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-judge")
    ap.add_argument("--pool", type=Path, default=Path("runs/rs-ifeval-k8/round-001/samples.jsonl"))
    ap.add_argument("--test", type=Path, default=Path("runs/smol-pass8/round-000/eval.jsonl"))
    ap.add_argument("--ks", type=int, nargs="+", default=[50, 200, 1000], help="EFT sizes: gold judgements")
    ap.add_argument("--per-prompt", type=int, default=3, help="test pairs per held-out prompt")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    args.out.mkdir(parents=True, exist_ok=True)
    pool = [p for ps in gold_pairs(read_jsonl(args.pool)).values() for p in ps]
    held_out = gold_pairs(read_jsonl(args.test))
    rng = random.Random(0)
    test = [p for pid in sorted(held_out) for p in rng.sample(held_out[pid], min(args.per_prompt, len(held_out[pid])))]
    print(f"{len(test)} test pairs on {len(held_out)} held-out prompts; EFT pool {len(pool)} pairs")

    # Present each test pair with the better response as `a` half of the time, so `accuracy_a_first` and
    # `accuracy_b_first` measure the position bias rather than the data's order.
    flip = [random.Random(f"side-{i}").random() < 0.5 for i in range(len(test))]
    a = [p["rejected"] if f else p["chosen"] for p, f in zip(test, flip)]
    b = [p["chosen"] if f else p["rejected"] for p, f in zip(test, flip)]
    gold = [0.0 if f else 1.0 for f in flip]

    def evaluate(name: str, path: str) -> dict:
        out = args.out / f"{name}.json"
        if out.is_file():
            return json.loads(out.read_text())
        judge = PairwiseJudge(load("policy", path), TEMPLATE, LABELS, batch_size=args.batch_size)
        js = judge.judgements([p["prompt"] for p in test], a, b)
        row = judge_metrics(js, gold)
        out.write_text(json.dumps(row | {"judgements": js}))
        return row

    results: dict[str, list[dict]] = {"off the shelf": [evaluate("base", MODEL)]}
    for k in args.ks:
        for seed in args.seeds:
            judge_dir = args.out / f"eft-k{k}-s{seed}"
            if not (judge_dir / "config.json").is_file() and not (judge_dir / "adapter_config.json").is_file():
                lessons = judge_records(random.Random(seed).sample(pool, min(k, len(pool))), TEMPLATE, LABELS)
                torch.manual_seed(seed)
                policy = load_policy(MODEL, lora=LoraConfig(r=16, alpha=32))
                steps = max(24, len(lessons) // 8)  # one pass over both orders, at least 24 steps
                cfg = TrainingConfig(lr=2e-4, steps=steps, batch_size=8, warmup_ratio=0.1)
                train_sft(policy, lessons, cfg, judge_dir, seed=seed)
            results.setdefault(f"EFT, K = {k}", []).append(evaluate(f"eft-k{k}-s{seed}", str(judge_dir)))
            print(f"K={k} seed {seed}: accuracy {results[f'EFT, K = {k}'][-1].get('accuracy')}")

    table = [[name, str(len(rows)), *(spread([r[m] for r in rows]) for m in METRICS)] for name, rows in results.items()]
    print(markdown_table(["labeller", "seeds", *METRICS], table))


if __name__ == "__main__":
    main()
