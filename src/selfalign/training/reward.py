"""Reward-model training: Bradley-Terry on chosen/rejected pairs, with optional Llama-2 margins."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from selfalign.batching import Batch, collate_pairs, encode_pair, pair_length
from selfalign.config import TrainingConfig
from selfalign.models.reward import RewardModel, scalar_rewards
from selfalign.records import llama2_margin
from selfalign.training.objectives import bradley_terry_loss
from selfalign.training.trainer import Records, train_and_save


def train_reward(
    rm: RewardModel,
    pairs: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    margins: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "reward model",
) -> list[dict]:
    """Fit `rm` to the pairs; `margins` = None, "small" or "large" (Llama 2 margins by label strength).

    A pair's own numeric `margin` field is used as given, and its `epsilon` (a soft label: P(chosen better) = 1 -
    epsilon) when it has one. Logs accuracy and mean reward margin.
    """
    data = [{**encode_pair(rm, p), "margin": llama2_margin(p, margins), "epsilon": p.get("epsilon")} for p in pairs]
    pad_id = rm.tokenizer.pad_token_id

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        chosen, rejected = scalar_rewards(model, batch).chunk(2)
        loss = bradley_terry_loss(chosen, rejected, batch["margin"], batch["epsilon"]).mean()  # 0, 0: Bradley-Terry
        diff = (chosen - rejected).detach()
        return loss, {"accuracy": (diff > 0).float().mean(), "margin": diff.mean()}

    collate = partial(collate_pairs, pad_id=pad_id, defaults={"epsilon": 0.0})
    source = Records(data, collate, [pair_length(x) for x in data])
    return train_and_save(rm, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc)


def pair_accuracy(rm: RewardModel, pairs: list[dict]) -> tuple[float, list[dict]]:
    """Share of pairs the RM ranks correctly (ties count as wrong), and per-pair rewards."""
    prompts = [p["prompt"] for p in pairs]
    chosen = rm.rewards(prompts, [p["chosen"] for p in pairs])
    rejected = rm.rewards(prompts, [p["rejected"] for p in pairs])
    rows = [{**p, "reward_chosen": c, "reward_rejected": r} for p, c, r in zip(pairs, chosen, rejected)]
    return sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(pairs)), rows
