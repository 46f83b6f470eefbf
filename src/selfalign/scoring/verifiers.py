"""Verifier scorers: an ORM's probability of a correct answer, a PRM's aggregated step scores."""

from __future__ import annotations

from selfalign.models.prm import ProcessRewardModel
from selfalign.models.reward import RewardModel
from selfalign.records import Problem
from selfalign.scoring.reward import sigmoid
from selfalign.stepwise import solution_score
from selfalign.tasks.base import Task


class OutcomeScorer:
    """sigma(ORM logit): a probability, so it can also weight a vote."""

    def __init__(self, rm: RewardModel, batch_size: int = 256):
        self.rm, self.batch_size = rm, batch_size
        self.name = f"orm:{rm.source}"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        logits = self.rm.rewards([p.prompt for p in problems], completions, self.batch_size)
        return [sigmoid(x) for x in logits]


class ProcessScorer:
    """A solution's PRM score: its step scores aggregated by product (Lightman), min (Math-Shepherd) or last."""

    def __init__(self, prm: ProcessRewardModel, task: Task, how: str = "product"):
        self.prm, self.task, self.how = prm, task, how
        self.name = f"prm:{prm.source}:{how}"

    def step_scores(self, problems: list[Problem], completions: list[str]) -> list[list[float]]:
        return self.prm.step_scores([p.prompt for p in problems], [self.task.steps(c) for c in completions])

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        return [solution_score(s, self.how) for s in self.step_scores(problems, completions)]
