"""Process reward models: a token-classification head on a causal LM, read at the last token of each
step (TRL's PRMTrainer layout; Lightman et al. 2023, Math-Shepherd)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from transformers import AutoModelForTokenClassification

from selfalign.batching import IGNORE, Batch, batched_forward, encode_stepwise, model_inputs, pad_right
from selfalign.config import LoraConfig
from selfalign.models.loading import Policy, load_head_model

STEP_SEP = " "  # how the built-in tasks join steps; the label sits on it, once the step is complete


@dataclass
class ProcessRewardModel(Policy):
    """Classes: binary 0 = wrong, 1 = right; ternary 0/1/2 = -1/0/+1. A step's score is the probability it is
    not wrong, 1 - P(class 0), so PRM800K's neutral steps count as positive, as in Lightman et al."""

    def step_scores(self, prompts: list[str], steps: list[list[str]], batch_size: int = 128) -> list[list[float]]:
        """Per-step probabilities of being correct, one list per solution (empty for a solution without steps)."""
        have = [i for i, s in enumerate(steps) if s]
        rows = [
            encode_stepwise(self.tokenizer, self.encode_prompt(prompts[i]), steps[i], [True] * len(steps[i]), STEP_SEP)
            for i in have
        ]
        collate = partial(pad_right, pad_id=self.tokenizer.pad_token_id)
        scored = batched_forward(self.model, rows, collate, _step_probabilities, batch_size)
        out: list[list[float]] = [[] for _ in prompts]
        for i, s in zip(have, scored):
            out[i] = s
        return out


def _step_probabilities(model: torch.nn.Module, batch: Batch) -> list[list[float]]:
    correct = 1 - model(**model_inputs(batch)).logits.float().softmax(-1)[..., 0]
    return [row[labels != IGNORE].tolist() for row, labels in zip(correct, batch["labels"])]


def load_process_reward_model(
    path: str, num_labels: int = 2, lora: LoraConfig | None = None, dtype: str = "auto"
) -> ProcessRewardModel:
    """A PRM from a trained PRM directory, or a fresh token-classification head on any causal LM checkpoint."""
    model, tokenizer = load_head_model(path, AutoModelForTokenClassification, num_labels, "TOKEN_CLS", lora, dtype)
    return ProcessRewardModel(model=model, tokenizer=tokenizer, source=path)
