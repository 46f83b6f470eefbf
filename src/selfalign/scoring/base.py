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

    def step_scores(self, problems: list[Problem], completions: list[str]) -> list[list[float]]:
        """An oracle PRM: where the checker finds an invalid step, 1.0 for each step before it and 0.0 from it on;
        otherwise every step scores the response's gold reward."""
        out = []
        for p, c in zip(problems, completions):
            check, n = self.task.check(p, c), len(self.task.steps(c))
            bad = check.first_error
            out.append([check.score] * n if bad is None else [1.0] * min(bad, n) + [0.0] * max(0, n - bad))
        return out
