"""Reward models: a scalar head on a causal LM, read at the last token (Llama 2 / TRL style). ORMs are the same
model trained on final-answer correctness."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from selfalign.batching import batched_forward, encode_sft, pad_right
from selfalign.config import LoraConfig
from selfalign.models.loading import Policy, load_head_model


@dataclass
class RewardModel(Policy):
    """Same prompt formatting as a Policy; `model` is a sequence-classification model with one label."""

    def rewards(self, prompts: list[str], completions: list[str], batch_size: int = 256) -> list[float]:
        rows = [encode_sft(self, p, c) for p, c in zip(prompts, completions)]
        collate = partial(pad_right, pad_id=self.tokenizer.pad_token_id)
        return batched_forward(self.model, rows, collate, lambda m, b: scalar_rewards(m, b).tolist(), batch_size)


def scalar_rewards(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B] rewards; HF's sequence-classification head reads the last non-padding token."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1).float()


def load_reward_model(path: str, lora: LoraConfig | None = None, dtype: str = "auto") -> RewardModel:
    """A reward model from a trained RM directory, or a fresh scalar head on any causal LM checkpoint."""
    model, tokenizer = load_head_model(path, AutoModelForSequenceClassification, 1, "SEQ_CLS", lora, dtype)
    return RewardModel(model=model, tokenizer=tokenizer, source=path)
