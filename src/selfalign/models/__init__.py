"""Models: a policy (causal LM), a reward model / ORM (scalar head) or a PRM (step head), each with its tokenizer."""

from __future__ import annotations

from typing import Literal

from selfalign.config import LoraConfig
from selfalign.models.loading import Policy, load_policy, resolve_model_path
from selfalign.models.prm import ProcessRewardModel, load_process_reward_model
from selfalign.models.reward import RewardModel, load_reward_model

__all__ = ["ModelKind", "Policy", "ProcessRewardModel", "RewardModel", "load", "resolve_model_path"]

ModelKind = Literal["policy", "reward", "prm"]


def load(
    kind: ModelKind, path: str, lora: LoraConfig | None = None, dtype: str = "auto", num_labels: int = 2
) -> Policy:
    """policy: a causal LM; reward: a scalar head (reward model, ORM); prm: a `num_labels`-class step head.
    `lora` adds fresh adapters (a model about to be trained); a head the checkpoint lacks is drawn fresh."""
    if kind == "policy":
        return load_policy(path, lora=lora, dtype=dtype)
    if kind == "reward":
        return load_reward_model(path, lora=lora, dtype=dtype)
    return load_process_reward_model(path, num_labels, lora=lora, dtype=dtype)
