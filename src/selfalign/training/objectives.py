"""Training objectives as pure functions on tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label) for next-token prediction, and the mask of supervised positions.

    logits [B, T, V] and labels [B, T] are aligned as the model returns them; IGNORE marks
    positions (prompt, padding) that are not scored.
    """
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    logp = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def sft_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over completion tokens in the batch."""
    logp, mask = token_logprobs(logits, labels)
    return -logp.sum() / mask.sum().clamp(min=1)
