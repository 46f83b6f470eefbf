"""Offline DPO-family training (Rafailov et al. 2023 and the variants in `preference.loss`).

    D = {(x, y_w, y_l)}                   a preference JSONL, or the testbed's gold pairs
    pi_ref = pi_SFT
    pi = argmin E_D[ loss(beta, log pi(y_w|x)/pi_ref(y_w|x) - log pi(y_l|x)/pi_ref(y_l|x)) ]

Evaluated before and after on the task's held-out prompts (gold reward and win rate vs the start).
"""

from __future__ import annotations

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.loop import Loop, load_preference_source
from selfalign.tasks.base import Task

SUMMARY = "DPO / cDPO / robust DPO / IPO / DPO+NLL from prompt/chosen/rejected pairs (offline)."


class DpoParams(Strict):
    data: str = Field(description="preference JSONL (prompt/chosen/rejected), or seed/all for the testbed's gold pairs")


PARAMS = DpoParams


def validate(p: DpoParams, task: Task, cfg: RunConfig) -> None:
    """Reject a bad pairs file before the run directory exists."""
    load_preference_source(task, p.data)


def run(loop: Loop) -> None:
    p: DpoParams = loop.params
    loop.evaluate(0, loop.base)
    pairs = loop.pairs(1, p.data)
    model = loop.train(1, loop.base, pairs, trainer="pairs")
    loop.evaluate(1, model, train_pairs=len(pairs))
