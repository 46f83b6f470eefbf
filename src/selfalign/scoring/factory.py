"""Scorers from a spec: what a config or the command line names (a kind and a checkpoint) becomes a `Scorer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from selfalign.config import PointwiseJudgeConfig
from selfalign.errors import InputError
from selfalign.models import ModelKind, Policy, resolve_model_path
from selfalign.scoring.base import CheckerScorer, GoldRewardScorer, Scorer
from selfalign.scoring.constitution import check_template
from selfalign.scoring.implicit import EngineFor, ImplicitRewardScorer
from selfalign.scoring.pairwise import POINTWISE_FIELDS, PointwiseJudge
from selfalign.scoring.reward import RewardModelScorer
from selfalign.scoring.verifiers import OutcomeScorer, ProcessScorer
from selfalign.tasks.base import Task

ScorerKind = Literal["rm", "orm", "prm", "implicit"]
SCORER_KINDS: tuple[str, ...] = get_args(ScorerKind)
RewardKind = Literal["checker", "gold", "rm", "orm", "prm", "judge"]  # an online recipe's reward (`params.scorer`)
REWARD_HELP = (
    "the reward: the task checker (1 correct / 0), the task's gold reward (an oracle), a reward model, an ORM, a PRM, "
    "or an LLM judge's rating in [-1, 1] (d-RLAIF; its prompt and labels in params.judge)"
)
Loader = Callable[[ModelKind, str], Policy]


def build_scorer(
    kind: ScorerKind,
    path: str,
    load: Loader,
    task: Task,
    aggregate: Literal["product", "min", "last"] = "product",
    reference: str | None = None,
    beta: float = 1.0,
    engine_for: EngineFor | None = None,
) -> Scorer:
    """rm: a reward model's scalar reward; orm: sigma(ORM logit); prm: the PRM's step scores aggregated by
    `aggregate`; implicit: beta [log pi(y|x) - log pi_ref(y|x)] of the policy at `path` against `reference`.
    `load(kind, path)` loads the model (the run's dtype, no adapters added); `engine_for` gives the implicit
    reward's log-probs from a sampling engine (`Loop.logprob_engine`)."""
    if kind == "rm":
        return RewardModelScorer(load("reward", path))
    if kind == "orm":
        return OutcomeScorer(load("reward", path))
    if kind == "prm":
        return ProcessScorer(load("prm", path), task, aggregate)
    if reference is None:
        raise ValueError("an implicit-reward scorer needs a reference model")
    return ImplicitRewardScorer(load("policy", path), load("policy", reference), beta, engine_for=engine_for)


def check_reward(kind: RewardKind, path: str | None, judge: PointwiseJudgeConfig | None = None) -> None:
    """An online recipe's `params.scorer` / `params.scorer_path` (and `params.judge`), checked before the run
    directory exists."""
    if kind == "judge" and judge is not None:
        check_template(judge.template, POINTWISE_FIELDS, {"response"}, "params.judge.template")
    if kind in ("checker", "gold") and path is not None:
        raise InputError(
            "<config>", "is for scorer rm, orm or prm, not the checker or the gold reward", field="params.scorer_path"
        )
    if kind not in ("checker", "gold") and path is None:
        raise InputError(
            "<config>", f"scorer {kind} needs params.scorer_path, its model directory", field="params.scorer"
        )
    if path is not None:
        resolve_model_path(path)


def reward_scorer(
    kind: RewardKind,
    path: str | None,
    load: Loader,
    task: Task,
    aggregate: Literal["product", "min", "last"],
    judge: PointwiseJudgeConfig | None = None,
) -> Scorer:
    """The scorer an online recipe's `params.scorer` names (see `check_reward`)."""
    if kind == "checker":
        return CheckerScorer(task)
    if kind == "gold":
        return GoldRewardScorer(task)
    assert path is not None
    if kind == "judge":
        judge = judge or PointwiseJudgeConfig()
        return PointwiseJudge(load("policy", path), judge.template, judge.labels, judge.values)
    return build_scorer(kind, path, load, task, aggregate)
