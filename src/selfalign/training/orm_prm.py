"""Verifier training: an outcome reward model on final-answer correctness, a process reward model on
step labels. Both are trained on self-generated samples labelled automatically.

Both draw plain shuffled batches, never length-grouped ones (`group_by_length` is ignored): a verifier's labels
depend on length (stepwise records end at their first error; a wrong solution often has a step too many or too
few), so length-sorted batches are label-sorted. On the arithmetic testbed that kept the training loss above a
constant predictor's (benchmarks/verifier_fit.py).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from selfalign.batching import IGNORE, Batch, encode_sft, encode_stepwise, pad_right
from selfalign.config import TrainingConfig
from selfalign.models.prm import STEP_SEP, ProcessRewardModel
from selfalign.models.reward import RewardModel, scalar_rewards
from selfalign.training.objectives import outcome_loss, step_loss
from selfalign.training.trainer import Records, train_and_save


def collate_outcomes(batch: list[dict], pad_id: int) -> Batch:
    out = pad_right(batch, pad_id)
    out["correct"] = torch.tensor([x["correct"] for x in batch], dtype=torch.float)
    return out


def orm_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
    logits = scalar_rewards(model, batch)
    accuracy = ((logits > 0) == batch["correct"].bool()).float().mean()
    return outcome_loss(logits, batch["correct"]).mean(), {"accuracy": accuracy}


def prm_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labelled = batch["labels"] != IGNORE
    accuracy = (logits.argmax(-1)[labelled] == batch["labels"][labelled]).float().mean()
    return step_loss(logits, batch["labels"]), {"step_accuracy": accuracy}


def encode_outcomes(rm: RewardModel, records: list[dict]) -> list[dict]:
    """Prompt/completion records with `correct`, tokenized for the ORM."""
    return [{**encode_sft(rm, r["prompt"], r["completion"]), "correct": bool(r["correct"])} for r in records]


def encode_steps(prm: ProcessRewardModel, records: list[dict], label_kind: str = "binary") -> list[dict]:
    """Stepwise records (prompt / completions = steps / labels), tokenized for the PRM."""
    encode = partial(encode_stepwise, prm.tokenizer, sep=STEP_SEP, label_kind=label_kind)
    return [encode(prm.encode_prompt(r["prompt"]), r["completions"], r["labels"]) for r in records]


def train_orm(
    rm: RewardModel,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "ORM",
) -> list[dict]:
    """Fit the ORM's final-token logit to each record's `correct` (prompt/completion records)."""
    collate = partial(collate_outcomes, pad_id=rm.tokenizer.pad_token_id)
    source = Records(encode_outcomes(rm, records), collate)  # no lengths: never length-grouped (see above)
    return train_and_save(rm, source, orm_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc)


def train_prm(
    prm: ProcessRewardModel,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "PRM",
    label_kind: str = "binary",
) -> list[dict]:
    """Fit the PRM to stepwise records (prompt / completions = steps / labels), a label per step."""
    collate = partial(pad_right, pad_id=prm.tokenizer.pad_token_id)
    source = Records(encode_steps(prm, records, label_kind), collate)
    return train_and_save(prm, source, prm_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc)
