"""Binary classifiers on a scalar head read at the last token (weak-to-strong's models, Burns et al. 2023).

A record: {prompt, completions, label}. One completion: is the text of class 1? The two-class logits are
[0, z(x)]. Two completions (a pairwise reward model): is the first better? The logits are [r(x, second),
r(x, first)], so class 1's probability is sigma(r_first - r_second), the Bradley-Terry preference. `label` is the
probability of class 1: 0/1 for ground truth, soft for a weak supervisor's predictions.

Batch layout: input_ids, attention_mask [k*B, T] with rows 0..B-1 the first completions (and B..2B-1 the second
ones when k = 2), label [B].
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

import torch

from selfalign.batching import Batch, batched_forward, encode_sft, pad_right
from selfalign.config import TrainingConfig
from selfalign.models.reward import RewardModel, scalar_rewards
from selfalign.training.objectives import confidence_coef, weak_to_strong_loss
from selfalign.training.trainer import Records, train_and_save

Loss = Literal["xent", "logconf"]


def encode_classified(rm: RewardModel, record: dict) -> dict:
    texts = [encode_sft(rm, record["prompt"], c) for c in record["completions"]]
    return {"texts": texts, "label": float(record["label"])}


def collate_classified(batch: list[dict], pad_id: int) -> Batch:
    k = len(batch[0]["texts"])
    out = pad_right([x["texts"][i] for i in range(k) for x in batch], pad_id)
    out["label"] = torch.tensor([x["label"] for x in batch], dtype=torch.float)
    return out


def class_logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """[B, 2] two-class logits (see the module docstring)."""
    z = scalar_rewards(model, batch)
    if len(z) == len(batch["label"]):
        return torch.stack([torch.zeros_like(z), z], dim=-1)
    first, second = z.chunk(2)
    return torch.stack([second, first], dim=-1)


def _length(x: dict) -> int:
    return max(len(t["input_ids"]) for t in x["texts"])


class Progress:
    """Micro-batches seen, saved with the step checkpoints, so the confidence weight's schedule resumes exactly."""

    def __init__(self) -> None:
        self.calls = 0

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]


def zero_head(rm: RewardModel) -> None:
    """The official code starts the head at zero, so the first steps move only the head and the pretrained
    features decide what it reads."""
    for name, module in rm.model.named_modules():
        if "score" in name.split(".") and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)


def train_classifier(
    rm: RewardModel,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "classifier",
    loss: Loss = "xent",
    aux_coef: float = 0.5,
    warmup_frac: float = 0.1,
) -> list[dict]:
    """Fit a zero-initialised head (and the model under it) to the records' labels: cross-entropy (`xent`) or the
    auxiliary confidence loss (`logconf`, weight alpha = `aux_coef` after the official warm-up). Records must all
    have the same number of completions. Logs agreement with the (hardened) labels and alpha."""
    if len({len(r["completions"]) for r in records}) > 1:
        raise ValueError("records mix single texts and pairs; train one kind at a time")
    zero_head(rm)
    steps = steps or cfg.steps
    progress = Progress()
    micro_steps = steps * cfg.grad_accum

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        coef = confidence_coef(progress.calls / micro_steps, aux_coef, warmup_frac) if loss == "logconf" else 0.0
        progress.calls += 1
        logits = class_logits(model, batch)
        weak = torch.stack([1 - batch["label"], batch["label"]], dim=-1)
        agree = ((logits[:, 1] > logits[:, 0]) == (batch["label"] > 0.5)).float().mean()
        return weak_to_strong_loss(logits, weak, coef).mean(), {"label_agreement": agree, "alpha": torch.tensor(coef)}

    data = [encode_classified(rm, r) for r in records]
    source = Records(data, partial(collate_classified, pad_id=rm.tokenizer.pad_token_id), [_length(x) for x in data])
    return train_and_save(
        rm, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc, stateful=(progress,)
    )


def class_probabilities(rm: RewardModel, records: list[dict], batch_size: int = 256) -> list[float]:
    """P(class 1) for each record (its label is not read)."""
    rows = [encode_classified(rm, {**r, "label": 0}) for r in records]
    collate = partial(collate_classified, pad_id=rm.tokenizer.pad_token_id)

    def read(model: torch.nn.Module, batch: Batch) -> list[float]:
        return class_logits(model, batch).float().softmax(-1)[:, 1].tolist()

    return batched_forward(rm.model, rows, collate, read, batch_size, length=_length)
