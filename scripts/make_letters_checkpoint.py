"""Build the shipped SFT checkpoint `builtin:letters-sft` for the gold-reward preference testbed.

A ~100k-parameter NoPE Llama with a character tokenizer, trained from scratch with selfalign's own
trainer on the testbed's SFT distribution (responses of random quality, see selfalign.tasks.letters),
so it answers with a mix of good and bad letters. Deterministic for a given seed; about 2 minutes
on 2 CPU cores:

    python scripts/make_letters_checkpoint.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from selfalign.config import LettersTaskConfig, TrainingConfig
from selfalign.models.factory import tiny_llama
from selfalign.models.loading import Policy
from selfalign.models.tokenizer import char_tokenizer
from selfalign.tasks.letters import ALPHABET, LettersTask
from selfalign.training.trainer import train_sft

OUT = Path(__file__).resolve().parents[1] / "src" / "selfalign" / "assets" / "letters-sft"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT, help="where to save the checkpoint")
    ap.add_argument("--examples", type=int, default=20_000, help="SFT examples drawn from the testbed")
    ap.add_argument("--steps", type=int, default=600, help="optimizer steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    task = LettersTask(LettersTaskConfig(name="letters"))
    records = task.sft_records(args.examples, seed=args.seed)
    tokenizer = char_tokenizer(ALPHABET)
    policy = Policy(model=tiny_llama(tokenizer, hidden=64, layers=2, heads=4), tokenizer=tokenizer, source="scratch")
    cfg = TrainingConfig(
        lr=3e-3, steps=args.steps, batch_size=64, warmup_ratio=0.05, scheduler="cosine", group_by_length=False
    )
    train_sft(policy, records, cfg, args.out, seed=args.seed, desc="pretraining letters-sft")
    print(f"saved {sum(p.numel() for p in policy.model.parameters()):,} parameters to {args.out}")


if __name__ == "__main__":
    main()
