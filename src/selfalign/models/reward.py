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
    model, tokenizer = load_head_model(path, AutoModelForSequenceClassification, 1, "SEQ_CLS", lora, dtype)
    return RewardModel(model=model, tokenizer=tokenizer, source=path)


def load_head_model(
    path: str, auto_class: type, num_labels: int, task_type: str, lora: LoraConfig | None, dtype: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A classification head (`auto_class`) on a checkpoint: a trained head, or a fresh one on a causal LM."""
    resolved = resolve_model_path(path)
    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(resolved)
        model = auto_class.from_pretrained(
            resolved, num_labels=num_labels, dtype="auto" if dtype == "auto" else getattr(torch, dtype)
        )
    except OSError as e:
        raise InputError(path, f"cannot load {auto_class.__name__}: {e}", field="model.path") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if lora is not None:
        model = add_lora(model, lora, task_type)
    return model, tokenizer
