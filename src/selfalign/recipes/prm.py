"""Process reward model from stepwise data (Lightman et al. 2023), in TRL's stepwise format.

    D = {(x, [s_1 .. s_n], [l_1 .. l_n])}          binary, or PRM800K's ternary -1/0/+1, labels
    PRM = token-classification head on the SFT model, read at the last token of each step
    minimise the mean cross-entropy over the labelled step positions

Reports step-label and first-error accuracy on held-out stepwise records before (fresh head) and after training.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.loop import Loop
from selfalign.records import load_stepwise
from selfalign.tasks.base import Task

SUMMARY = "Process reward model from stepwise records (binary or PRM800K ternary); held-out step accuracy."


class PrmParams(Strict):
    data: str = Field(description="training records: stepwise JSONL (prompt, completions = steps, labels)")
    eval_data: str = Field(description="held-out stepwise JSONL, scored before and after training")
    label_kind: Literal["binary", "ternary"] = Field(
        "binary", description="binary (true/false or 1/0) or ternary (-1/0/1, PRM800K) step labels"
    )


EVALUATES_TASK = False  # held-out pairs / steps are its evaluation, not the task's problems
PARAMS = PrmParams


def validate(p: PrmParams, task: Task, cfg: RunConfig) -> None:
    load_stepwise(p.data, p.label_kind)
    load_stepwise(p.eval_data, p.label_kind)


def run(loop: Loop) -> None:
    p: PrmParams = loop.params
    train, test = load_stepwise(p.data, p.label_kind), load_stepwise(p.eval_data, p.label_kind)
    loop.evaluate_steps(0, loop.base, test, p.label_kind)
    prm = loop.train(1, loop.base, train, trainer="prm", name="prm", label_kind=p.label_kind)
    loop.evaluate_steps(1, prm, test, p.label_kind, train_records=len(train))
