"""Reward-model combination rules."""

from __future__ import annotations

import math

import pytest

from selfalign.scoring.reward import LinearCombination, SafetyGatedCombination, safety_gated, whiten
from selfalign.tasks.base import Problem


class Const:
    def __init__(self, name, values):
        self.name, self.values = name, values

    def score(self, problems, completions):
        return list(self.values)


def logit(p):
    return math.log(p / (1 - p))


def test_safety_gate_follows_llama2_rule():
    helpful = [2.0, 2.0, 2.0, -1.0]
    safety = [logit(0.9), logit(0.1), logit(0.9), logit(0.5)]
    tagged = [False, False, True, False]
    # untagged and safe -> helpfulness; unsafe (sigmoid < 0.15) -> safety; tagged -> safety
    chosen = [2.0, logit(0.1), logit(0.9), -1.0]
    assert safety_gated(helpful, safety, tagged, 0.15) == pytest.approx(whiten(chosen))
    out = whiten(chosen)
    assert sum(out) == pytest.approx(0, abs=1e-9) and sum(x * x for x in out) / 4 == pytest.approx(1, abs=1e-6)


def test_combinations_as_scorers():
    problems = [Problem(id=str(i), prompt="p", answer="", meta={"safety": i == 1}) for i in range(3)]
    h, s = Const("h", [1.0, 2.0, 3.0]), Const("s", [5.0, -5.0, -5.0])
    assert LinearCombination([h, s], [1.0, 0.5]).score(problems, ["", "", ""]) == [3.5, -0.5, 0.5]
    gated = SafetyGatedCombination(h, s).score(problems, ["", "", ""])
    assert gated == pytest.approx(whiten([1.0, -5.0, -5.0]))
    with pytest.raises(ValueError):
        LinearCombination([h], [1.0, 2.0])
