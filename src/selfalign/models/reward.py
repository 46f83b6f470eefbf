"""Reward models: a scalar head on a causal LM, read at the last token (Llama 2 / TRL style)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from selfalign.config import LoraConfig
from selfalign.errors import InputError
from selfalign.models.loading import Policy, add_lora, resolve_model_path


@dataclass
class RewardModel(Policy):
    """Same prompt formatting as a Policy; `model` is a sequence-classification model with one label."""

    def rewards(self, prompts: list[str], completions: list[str], batch_size: int = 256) -> list[float]:
        from selfalign.training.collate import score_completions

        return score_completions(self, prompts, completions, scalar_rewards, batch_size)


def scalar_rewards(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B] rewards; HF's sequence-classification head reads the last non-padding token."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1).float()


def load_reward_model(path: str, lora: LoraConfig | None = None, dtype: str = "auto") -> RewardModel:
    """A reward model from a trained RM directory, or a fresh scalar head on any causal LM checkpoint."""
    resolved = resolve_model_path(path)
    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(resolved)
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved, num_labels=1, dtype="auto" if dtype == "auto" else getattr(torch, dtype)
        )
    except OSError as e:
        raise InputError(path, f"cannot load reward model: {e}", field="model.path") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if lora is not None:
        model = add_lora(model, lora, "SEQ_CLS")
    return RewardModel(model=model, tokenizer=tokenizer, source=path)
