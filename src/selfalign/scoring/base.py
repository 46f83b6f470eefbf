"""The scorer interface: anything that assigns each (problem, completion) a number, higher is better.

The task checker, reward models, verifiers and judges all implement it, so any recipe can use any.
"""

from __future__ import annotations

from typing import Protocol

from selfalign.records import Problem
from selfalign.tasks.base import Task


class Scorer(Protocol):
    name: str

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]: ...


class CheckerScorer:
    """Ground truth: 1.0 for a correct final answer, else 0.0."""

    name = "checker"

    def __init__(self, task: Task):
        self.task = task
        self.name = f"checker:{task.name}"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        return [float(self.task.check(p, c).correct) for p, c in zip(problems, completions)]


class GoldRewardScorer:
    """The task's gold reward (`Check.score`): a graded task's hidden reward, else 1.0 / 0.0 as the checker. An
    oracle reward model: what training on a perfect reward would give."""

    def __init__(self, task: Task):
        self.task = task
        self.name = f"gold:{task.name}"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        return [self.task.check(p, c).score for p, c in zip(problems, completions)]
