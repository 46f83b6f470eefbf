"""Turn prompt/completion records into padded tensors with completion-only labels."""

from __future__ import annotations

from collections.abc import Callable

import torch

from selfalign.models.loading import Policy
from selfalign.training.objectives import IGNORE


def encode_sft(policy: Policy, prompt: str, completion: str, max_length: int | None = None) -> dict:
    p, c = policy.encode_prompt(prompt), policy.encode_completion(completion)
    ids = (p + c)[:max_length] if max_length else p + c
    labels = ([IGNORE] * len(p) + c)[: len(ids)]
    return {"input_ids": ids, "labels": labels}


def pad_right(batch: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x["input_ids"]) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        n = len(x["input_ids"])
        ids[i, :n] = torch.tensor(x["input_ids"])
        labels[i, :n] = torch.tensor(x["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@torch.no_grad()
def score_completions(
    policy: Policy,
    prompts: list[str],
    completions: list[str],
    score_batch: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    batch_size: int = 256,
) -> list[float]:
    """One number per (prompt, completion): `score_batch(model, padded batch)` -> [B], run in
    length-sorted batches (little padding) and returned in input order."""
    device = next(policy.model.parameters()).device
    policy.model.eval()
    rows = [encode_sft(policy, p, c) for p, c in zip(prompts, completions)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    out = [0.0] * len(rows)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        batch = {k: v.to(device) for k, v in pad_right([rows[j] for j in idx], policy.tokenizer.pad_token_id).items()}
        for j, v in zip(idx, score_batch(policy.model, batch).tolist()):
            out[j] = v
    return out
