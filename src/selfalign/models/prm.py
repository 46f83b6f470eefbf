"""Process reward models: a token-classification head on a causal LM, read at the last token of each
step (TRL's PRMTrainer layout; Lightman et al. 2023, Math-Shepherd)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoModelForTokenClassification

from selfalign.config import LoraConfig
from selfalign.models.loading import Policy
from selfalign.models.reward import load_head_model
from selfalign.stepwise import encode_stepwise
from selfalign.training.collate import pad_right
from selfalign.training.objectives import IGNORE

STEP_SEP = " "  # how the built-in tasks join steps; the label sits on it, once the step is complete


@dataclass
class ProcessRewardModel(Policy):
    """Classes: binary 0 = wrong, 1 = right; ternary 0/1/2 = -1/0/+1. A step's score is the probability it is
    not wrong, 1 - P(class 0), so PRM800K's neutral steps count as positive, as in Lightman et al."""

    @torch.no_grad()
    def step_scores(self, prompts: list[str], steps: list[list[str]], batch_size: int = 128) -> list[list[float]]:
        """Per-step probabilities of being correct, one list per solution (empty for a solution without steps)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        out: list[list[float]] = [[] for _ in prompts]
        rows = [
            (i, encode_stepwise(self.tokenizer, self.encode_prompt(p), s, [True] * len(s), STEP_SEP))
            for i, (p, s) in enumerate(zip(prompts, steps))
            if s
        ]
        rows.sort(key=lambda r: len(r[1]["input_ids"]))  # length-sorted batches waste little on padding
        for b in range(0, len(rows), batch_size):
            chunk = rows[b : b + batch_size]
            batch = {k: v.to(device) for k, v in pad_right([r for _, r in chunk], self.tokenizer.pad_token_id).items()}
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            correct = 1 - logits.float().softmax(-1)[..., 0]
            for row, (i, _) in enumerate(chunk):
                out[i] = correct[row][batch["labels"][row] != IGNORE].tolist()
        return out


def load_process_reward_model(
    path: str, num_labels: int = 2, lora: LoraConfig | None = None, dtype: str = "auto"
) -> ProcessRewardModel:
    """A PRM from a trained PRM directory, or a fresh token-classification head on any causal LM checkpoint."""
    model, tokenizer = load_head_model(path, AutoModelForTokenClassification, num_labels, "TOKEN_CLS", lora, dtype)
    return ProcessRewardModel(model=model, tokenizer=tokenizer, source=path)
