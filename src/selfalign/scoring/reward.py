"""Reward-model scorers and their combinations (linear, and Llama 2's safety-gated rule)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from selfalign.models.reward import RewardModel
from selfalign.records import Problem
from selfalign.scoring.base import Scorer


class RewardModelScorer:
    """The RM's scalar reward for (prompt, completion)."""

    def __init__(self, rm: RewardModel, batch_size: int = 256):
        self.rm, self.batch_size = rm, batch_size
        self.name = f"rm:{rm.source}"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        return self.rm.rewards([p.prompt for p in problems], completions, self.batch_size)


class LinearCombination:
    """sum_i w_i * score_i."""

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float]):
        if len(scorers) != len(weights):
            raise ValueError("one weight per scorer")
        self.scorers, self.weights = list(scorers), list(weights)
        self.name = "linear(" + ", ".join(f"{w:g}*{s.name}" for s, w in zip(scorers, weights)) + ")"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        columns = [s.score(problems, completions) for s in self.scorers]
        return [sum(w * c[i] for w, c in zip(self.weights, columns)) for i in range(len(completions))]


def safety_gated(
    helpfulness: Sequence[float], safety: Sequence[float], safety_tagged: Sequence[bool], threshold: float = 0.15
) -> list[float]:
    """Llama 2 (Touvron et al. 2023, §3.2.3): R_c = R_s if the prompt is safety-tagged or R_s < threshold,
    else R_h; then WHITEN(LOGIT(R_c)). Inputs are raw RM logits; the gate compares sigmoid(R_s), the
    probability scale the 0.15 threshold is defined on, and LOGIT of that probability is the raw score again.
    """
    gated = [s if tagged or sigmoid(s) < threshold else h for h, s, tagged in zip(helpfulness, safety, safety_tagged)]
    return whiten(gated)


def whiten(xs: Sequence[float]) -> list[float]:
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return [(x - mean) / (std + 1e-8) for x in xs]


def sigmoid(x: float) -> float:
    """Logistic function without overflow for large |x|."""
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


class SafetyGatedCombination:
    """Helpfulness and safety RMs combined by Llama 2's gate; prompts are tagged by `meta['safety']`."""

    def __init__(self, helpfulness: Scorer, safety: Scorer, threshold: float = 0.15):
        self.helpfulness, self.safety, self.threshold = helpfulness, safety, threshold
        self.name = f"safety_gated({helpfulness.name}, {safety.name}, {threshold:g})"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        return safety_gated(
            self.helpfulness.score(problems, completions),
            self.safety.score(problems, completions),
            [bool(p.meta.get("safety")) for p in problems],
            self.threshold,
        )
