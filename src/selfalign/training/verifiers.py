"""Verifier training: an outcome reward model on final-answer correctness, a process reward model on
step labels. Both are trained on self-generated samples labelled automatically."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from selfalign.config import TrainingConfig
from selfalign.models.prm import STEP_SEP, ProcessRewardModel
from selfalign.models.reward import RewardModel, scalar_rewards
from selfalign.stepwise import encode_stepwise
from selfalign.training.collate import encode_sft, pad_right
from selfalign.training.objectives import IGNORE, outcome_loss, step_loss
from selfalign.training.trainer import Batch, train_and_save


def collate_outcomes(batch: list[dict], pad_id: int) -> Batch:
    out = pad_right(batch, pad_id)
    out["correct"] = torch.tensor([x["correct"] for x in batch], dtype=torch.float)
    return out


def train_orm(
    rm: RewardModel,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "ORM",
) -> list[dict]:
    """Fit the ORM's final-token logit to each record's `correct` (prompt/completion records)."""
    data = [{**encode_sft(rm, r["prompt"], r["completion"]), "correct": bool(r["correct"])} for r in records]

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        logits = scalar_rewards(model, batch)
        accuracy = ((logits > 0) == batch["correct"].bool()).float().mean()
        return outcome_loss(logits, batch["correct"]).mean(), {"accuracy": accuracy}

    collate = partial(collate_outcomes, pad_id=rm.tokenizer.pad_token_id)
    lengths = [len(x["input_ids"]) for x in data]
    return train_and_save(rm, data, collate, compute_loss, cfg, out_dir, seed, steps, desc, lengths)


def train_prm(
    prm: ProcessRewardModel,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "PRM",
    label_kind: str = "binary",
) -> list[dict]:
    """Fit the PRM to stepwise records (prompt / completions = steps / labels), a label per step."""
    data = [
        encode_stepwise(
            prm.tokenizer,
            prm.encode_prompt(r["prompt"]),
            r["completions"],
            r["labels"],
            STEP_SEP,
            label_kind=label_kind,
        )
        for r in records
    ]

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labelled = batch["labels"] != IGNORE
        accuracy = (logits.argmax(-1)[labelled] == batch["labels"][labelled]).float().mean()
        return step_loss(logits, batch["labels"]), {"step_accuracy": accuracy}

    collate = partial(pad_right, pad_id=prm.tokenizer.pad_token_id)
    lengths = [len(x["input_ids"]) for x in data]
    return train_and_save(prm, data, collate, compute_loss, cfg, out_dir, seed, steps, desc, lengths)
