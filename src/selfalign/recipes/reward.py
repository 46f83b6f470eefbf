"""Reward-model training (Llama 2 §3.2.2): Bradley-Terry with optional margins by label strength.

    D = {(x, y_c, y_r, strength)}
    r_phi = scalar head on the SFT model, read at the last token
    phi = argmin E_D[ -log sigma(r(x, y_c) - r(x, y_r) - m(strength)) ]     m = 0, small or large

Reports pairwise accuracy on held-out pairs before (fresh head) and after training.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.loop import Loop, load_preference_source
from selfalign.records import load_pairs
from selfalign.tasks.base import Task

SUMMARY = "Reward model (Bradley-Terry, optional Llama-2 margins) from preference pairs; held-out pair accuracy."


class RewardParams(Strict):
    data: str = Field(description="training pairs: preference JSONL, or seed/all for the testbed's gold pairs")
    eval_data: str | None = Field(None, description="held-out pairs JSONL (default: the testbed's held-out gold pairs)")
    margins: Literal["none", "small", "large"] = Field(
        "none", description="Llama-2 margins from each pair's `strength` (a numeric `margin` field always applies)"
    )


EVALUATES_TASK = False  # held-out pairs / steps are its evaluation, not the task's problems
PARAMS = RewardParams


def held_out(task: Task, eval_data: str | None) -> list[dict]:
    if eval_data is not None:
        return load_pairs(eval_data)[0]
    pairs = task.eval_pairs()
    if pairs is None:
        raise InputError("<config>", f"task '{task.name}' has no held-out pairs; set it", field="params.eval_data")
    return pairs


def validate(p: RewardParams, task: Task, cfg: RunConfig) -> None:
    load_preference_source(task, p.data)
    held_out(task, p.eval_data)


def run(loop: Loop) -> None:
    p: RewardParams = loop.params
    test = held_out(loop.task, p.eval_data)
    loop.evaluate_pairs(0, loop.base, test)
    pairs = loop.pairs(1, p.data)
    rm = loop.train(1, loop.base, pairs, trainer="reward", margins=None if p.margins == "none" else p.margins)
    loop.evaluate_pairs(1, rm, test, train_pairs=len(pairs))
