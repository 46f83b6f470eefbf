"""HIR's offline phase (Zhang et al. 2023): supervised learning on hindsight-relabelled outputs with a contrastive
term against the opposite instruction (`objectives.hir_loss`).

A record: {prompt, negative_prompt, completion}: the output under its hindsight instruction and under the opposite
one. Sub-output sampling (the official `DynamicLengthSampler`): each time a record is batched, a random span
[start, end) of its L completion tokens (EOS included) is the target, start from {0, 2, ..., L - 4} and end from
{start + 1, start + 3, ..., <= L}, the whole output when L <= 3; the tokens before the span stay in the input, as the
official code moves them there. (The official code re-tokenizes most spans, which appends an EOS to them; that
would teach stopping mid-output, so it is left out.)

Batch layout: input_ids, attention_mask, labels [2B, T]: rows 0..B-1 under the hindsight instruction, B..2B-1 the
same outputs under the opposite one; labels mark each row's span.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from selfalign.batching import IGNORE, Batch, encode_sft, model_inputs, pad_right
from selfalign.config import TrainingConfig
from selfalign.models import Policy
from selfalign.training.objectives import hir_loss
from selfalign.training.trainer import Records, train_and_save


def sub_output(length: int, rng: random.Random) -> tuple[int, int]:
    """The official span sampler: (start, end) of the target within `length` output tokens."""
    if length <= 3:
        return 0, length
    start = rng.choice(range(0, length - 3, 2))
    return start, rng.choice(range(start + 1, length + 1, 2))


def _span_labels(row: dict, start: int, end: int) -> dict:
    first = next(i for i, t in enumerate(row["labels"]) if t != IGNORE)  # the output's first token
    labels = [t if first + start <= i < first + end else IGNORE for i, t in enumerate(row["labels"])]
    return {"input_ids": row["input_ids"], "labels": labels}


def train_hir(
    policy: Policy,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "training",
    sub_outputs: bool = True,
    epsilon: float = 0.2,
    entropy_coef: float = 1e-3,
    label_smoothing: float | None = None,
) -> list[dict]:
    """Train on hindsight-relabelled records with `objectives.hir_loss`; save like `train_sft`."""
    data = [
        {
            "pos": encode_sft(policy, r["prompt"], r["completion"]),
            "neg": encode_sft(policy, r["negative_prompt"], r["completion"]),
        }
        for r in records
    ]
    pad_id = policy.tokenizer.pad_token_id
    rng = random.Random(seed)  # drawn in collation order, which a resumed stage replays

    def collate(batch: list[dict]) -> Batch:
        rows = []
        for x in batch:
            length = sum(t != IGNORE for t in x["pos"]["labels"])
            start, end = sub_output(length, rng) if sub_outputs else (0, length)
            rows.append((_span_labels(x["pos"], start, end), _span_labels(x["neg"], start, end)))
        return pad_right([p for p, _ in rows] + [n for _, n in rows], pad_id)

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        pos, neg = model(**model_inputs(batch)).logits.chunk(2)
        pos_labels, neg_labels = batch["labels"].chunk(2)
        return hir_loss(pos, pos_labels, neg, neg_labels, epsilon, entropy_coef, label_smoothing)

    lengths = [max(len(x["pos"]["input_ids"]), len(x["neg"]["input_ids"])) for x in data]
    source = Records(data, collate, lengths)
    return train_and_save(policy, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc)
