"""Reward-model training: Bradley-Terry on chosen/rejected pairs, with optional Llama-2 margins."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from selfalign.config import TrainingConfig
from selfalign.models.reward import RewardModel, scalar_rewards
from selfalign.pairs import llama2_margin
from selfalign.training.collate import encode_sft, pad_right
from selfalign.training.objectives import bradley_terry_loss
from selfalign.training.pairwise import pair_length
from selfalign.training.trainer import Batch, train_and_save


def collate_reward_pairs(batch: list[dict], pad_id: int) -> Batch:
    """Rows 0..B-1 chosen, B..2B-1 rejected (as for DPO), plus each pair's margin."""
    out = pad_right([x["chosen"] for x in batch] + [x["rejected"] for x in batch], pad_id)
    out["margin"] = torch.tensor([x["margin"] for x in batch], dtype=torch.float)
    return out


def train_reward(
    rm: RewardModel,
    pairs: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    margins: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "reward model",
) -> list[dict]:
    """Fit `rm` to the pairs; `margins` = None, "small" or "large" (Llama 2 margins by label strength).

    A pair's own numeric `margin` field is used as given. Logs accuracy and mean reward margin.
    """
    data = [
        {
            "chosen": encode_sft(rm, p["prompt"], p["chosen"]),
            "rejected": encode_sft(rm, p["prompt"], p["rejected"]),
            "margin": llama2_margin(p, margins),
        }
        for p in pairs
    ]
    pad_id = rm.tokenizer.pad_token_id

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        chosen, rejected = scalar_rewards(model, batch).chunk(2)
        loss = bradley_terry_loss(chosen, rejected, batch["margin"]).mean()  # margin 0 = plain Bradley-Terry
        diff = (chosen - rejected).detach()
        return loss, {"accuracy": (diff > 0).float().mean(), "margin": diff.mean()}

    collate = partial(collate_reward_pairs, pad_id=pad_id)
    lengths = [pair_length(x) for x in data]
    return train_and_save(rm, data, collate, compute_loss, cfg, out_dir, seed, steps, desc, lengths)


def pair_accuracy(rm: RewardModel, pairs: list[dict]) -> tuple[float, list[dict]]:
    """Share of pairs the RM ranks correctly (ties count as wrong), and per-pair rewards."""
    prompts = [p["prompt"] for p in pairs]
    chosen = rm.rewards(prompts, [p["chosen"] for p in pairs])
    rejected = rm.rewards(prompts, [p["rejected"] for p in pairs])
    rows = [{**p, "reward_chosen": c, "reward_rejected": r} for p, c, r in zip(pairs, chosen, rejected)]
    return sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(pairs)), rows
