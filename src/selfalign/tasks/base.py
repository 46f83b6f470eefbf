"""The Task interface: prompts with gold answers, a grader, a rationalization hint, and optional abilities.

A task subclasses `Task` and implements the required methods. The optional abilities (gold preference pairs,
unlabelled prompts, a graded gold reward) have defaults that say the task lacks them, so callers ask
`task.gold_pairs("seed") is None` rather than probing attributes.
"""

from __future__ import annotations

from typing import Any

from selfalign.records import Check, Problem

__all__ = ["Check", "Problem", "Task"]


class Task:
    name: str
    graded: bool = False  # check() returns a real-valued gold reward (Check.reward), not just correctness

    def train_problems(self, round: int, seed: int) -> list[Problem]:
        """A fresh training prompt set for this round."""
        raise NotImplementedError

    def eval_sets(self) -> dict[str, list[Problem]]:
        """Held-out evaluation sets keyed by difficulty label."""
        raise NotImplementedError

    def check(self, problem: Problem, completion: str) -> Check:
        raise NotImplementedError

    def hint(self, problem: Problem) -> str:
        """The rationalization prompt: the problem with its answer given (STaR)."""
        raise NotImplementedError

    def steps(self, completion: str) -> list[str]:
        """The completion's reasoning steps, used for path dedup and step labels."""
        raise NotImplementedError

    # -- optional abilities ----------------------------------------------------------------------
    def gold_pairs(self, which: str) -> list[dict] | None:
        """Gold-labelled preference pairs: `seed` (the small labelled share) or `all`; None if the task has none."""
        return None

    def eval_pairs(self) -> list[dict] | None:
        """Held-out gold-labelled pairs (reward-model accuracy); None if the task has none."""
        return None

    def unlabelled(self) -> list[Problem] | None:
        """The unlabelled prompt pool of self-annotating recipes (SPA); None if the task has none."""
        return None

    def eval_metrics(self, rows: list[dict]) -> dict[str, Any]:
        """Task-specific metrics over a round's graded eval samples (e.g. IFEval's four accuracies), added to the
        round's metrics row; none by default."""
        return {}
