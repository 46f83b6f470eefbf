"""Turn prompt/completion records into padded tensors with completion-only labels."""

from __future__ import annotations

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
