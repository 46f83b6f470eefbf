"""The Task interface: prompts with gold answers, a grader, and a rationalization hint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str
    answer: str
    difficulty: int | str = 0
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Check:
    correct: bool
    answer: str | None  # the final answer extracted from the completion
    first_error: int | None = None  # index of the first invalid step; None when all steps are valid
    n_steps: int = 0
    reward: float | None = None  # graded tasks: the hidden gold reward; None means float(correct)

    @property
    def score(self) -> float:
        return float(self.correct) if self.reward is None else self.reward


class Task(Protocol):
    name: str

    def train_problems(self, round: int, seed: int) -> list[Problem]:
        """A fresh training prompt set for this round."""
        ...

    def eval_sets(self) -> dict[str, list[Problem]]:
        """Held-out evaluation sets keyed by difficulty label."""
        ...

    def check(self, problem: Problem, completion: str) -> Check: ...

    def hint(self, problem: Problem) -> str:
        """The rationalization prompt: the problem with its answer given (STaR)."""
        ...

    def steps(self, completion: str) -> list[str]:
        """The completion's reasoning steps, used for path dedup."""
        ...
