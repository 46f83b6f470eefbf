"""Scorers from a spec: what a config or the command line names (a kind and a checkpoint) becomes a `Scorer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from selfalign.models import ModelKind, Policy
from selfalign.scoring.base import Scorer
from selfalign.scoring.implicit import ImplicitRewardScorer
from selfalign.scoring.reward import RewardModelScorer
from selfalign.scoring.verifiers import OutcomeScorer, ProcessScorer
from selfalign.tasks.base import Task

ScorerKind = Literal["rm", "orm", "prm", "implicit"]
SCORER_KINDS: tuple[str, ...] = get_args(ScorerKind)
Loader = Callable[[ModelKind, str], Policy]


def build_scorer(
    kind: ScorerKind,
    path: str,
    load: Loader,
    task: Task,
    aggregate: Literal["product", "min", "last"] = "product",
    reference: str | None = None,
    beta: float = 1.0,
) -> Scorer:
    """rm: a reward model's scalar reward; orm: sigma(ORM logit); prm: the PRM's step scores aggregated by
    `aggregate`; implicit: beta [log pi(y|x) - log pi_ref(y|x)] of the policy at `path` against `reference`.
    `load(kind, path)` loads the model (the run's dtype, no adapters added)."""
    if kind == "rm":
        return RewardModelScorer(load("reward", path))
    if kind == "orm":
        return OutcomeScorer(load("reward", path))
    if kind == "prm":
        return ProcessScorer(load("prm", path), task, aggregate)
    if reference is None:
        raise ValueError("an implicit-reward scorer needs a reference model")
    return ImplicitRewardScorer(load("policy", path), load("policy", reference), beta)
