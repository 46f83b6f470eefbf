"""GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024) as a trainer: every micro-batch is sampled online.

Batch layout, made by `selfalign.rollout.GroupRollout` from the policy as it is at that step; B rows are
B / n prompts x n samples (group_size), group by group:

    input_ids, attention_mask, labels  [B, T]    prompt + sampled completion; labels IGNORE on prompt and padding
    advantages                         [B]       group-relative, from the scorer's rewards
    ref_logps                          [B, T-1]  the reference's per-token log-probs (GRPO with beta > 0 only)
    reward, gold, tokens               [B]       scorer reward, task gold reward, completion length (logged)

One optimizer update per rollout (TRL's default `num_iterations=1`), so pi_theta_old is the policy itself: its
log-probs enter the ratio detached, the ratio is 1 and its gradient is the policy gradient.

Without a KL term in the loss (beta = 0, or RLOO, whose KL is in the reward), rows whose advantage is 0 (groups all
right or all wrong, most groups early on hard prompts and late on easy ones) add exactly 0 to the loss and its
gradient: `skip_zero_advantage` leaves them out of the forward and backward pass and rescales the loss of the rest to
the whole batch's (`rl_objectives.kept_rows_scale`), so the update is the same. The logged entropy and clip
fractions are then those of the rows trained on; `trained_rows` is their share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from selfalign.batching import IGNORE, Batch, model_inputs
from selfalign.config import TrainingConfig
from selfalign.models import Policy
from selfalign.training.objectives import token_logprobs
from selfalign.training.rl_objectives import (
    LossType,
    grpo_loss,
    kept_rows_scale,
    masked_mean,
    rloo_loss,
    rows_with_signal,
)
from selfalign.training.trainer import Online, train_and_save

Algorithm = Literal["grpo", "rloo"]


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution [B, T-1] (aligned with token_logprobs), without gradient."""
    with torch.no_grad():
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        return -(logp.exp() * logp).sum(-1)


def train_grpo(
    policy: Policy,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    rollout: Callable[[Policy], Online],
    algorithm: Algorithm = "grpo",
    loss_type: LossType = "dapo",
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    max_new_tokens: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "grpo",
    skip_zero_advantage: bool = True,
) -> list[dict]:
    """Train `policy` on batches that `rollout(policy)` samples, scores and collates (the records, the prompts,
    are the rollout's). Logs per step: loss, reward, gold reward, KL to the reference (beta > 0), entropy,
    completion length, clip fractions and the share of rows trained on."""
    source = rollout(policy)
    skip = skip_zero_advantage and (algorithm == "rloo" or beta == 0.0)

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        advantages = batch["advantages"]
        keep = rows_with_signal(advantages) if skip else advantages.new_ones(len(advantages), dtype=torch.bool)
        partial = not keep.all()
        rows = {k: v[keep] for k, v in batch.items() if k not in ("reward", "gold", "tokens")} if partial else batch
        logits = model(**model_inputs(rows)).logits
        logps, mask = token_logprobs(logits, rows["labels"])
        if algorithm == "grpo":
            loss, metrics = grpo_loss(
                logps,
                logps.detach(),
                rows["advantages"],
                mask,
                loss_type=loss_type,
                epsilon=epsilon,
                epsilon_high=epsilon_high,
                beta=beta,
                ref_logps=rows.get("ref_logps"),
                max_completion_length=max_new_tokens,
            )
        else:  # RLOO's KL, if any, is already in the reward
            loss, metrics = rloo_loss(logps, logps.detach(), rows["advantages"], mask, epsilon, epsilon_high)
        if partial:
            scale_as = loss_type if algorithm == "grpo" else "grpo"  # RLOO's loss is a mean over sequences
            loss = loss * kept_rows_scale(scale_as, keep, batch["labels"][:, 1:] != IGNORE)
        return loss, {
            **metrics,
            "reward": batch["reward"].mean(),
            "gold_reward": batch["gold"].mean(),
            "completion_tokens": batch["tokens"].float().mean(),
            "entropy": masked_mean(token_entropy(logits), mask.float()),
            "trained_rows": keep.float().mean(),
        }

    return train_and_save(policy, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc)
