"""Rejection-sampling SFT (Touvron et al. 2023, Llama 2 §3.2.3).

    for round t = 1..T:
        sample K responses per prompt from M_{t-1}
        score them; the best per prompt joins the pool, replacing a worse one from an earlier round
            (optionally: cut-off responses dropped, the shortest of equal scores preferred)
        M_t = finetune(init, pool)
The scorer is any `Scorer`: the task checker by default, or reward models (one, a weighted sum,
or Llama 2's safety-gated pair of helpfulness and safety RMs), or a trained ORM or PRM verifier.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfalign.config import RunConfig, Strict
from selfalign.loop import Loop
from selfalign.models import resolve_model_path
from selfalign.records import sft_record
from selfalign.scoring.base import CheckerScorer, Scorer
from selfalign.scoring.factory import build_scorer
from selfalign.scoring.reward import LinearCombination, SafetyGatedCombination
from selfalign.tasks.base import Task

SUMMARY = "Rejection sampling (Llama 2): best of K by a scorer becomes the SFT target, pooled across rounds."


class RewardModelSpec(Strict):
    path: str = Field(description="a trained reward model directory (e.g. a `reward` run's round-001/checkpoint)")
    weight: float = Field(1.0, description="weight in a linear combination")
    role: Literal["helpfulness", "safety"] = Field("helpfulness", description="its role in the safety gate")


class VerifierSpec(Strict):
    path: str = Field(description="a trained verifier directory (e.g. a `vstar` run's round-002/orm or round-002/prm)")
    kind: Literal["orm", "prm"] = Field(description="orm: P(correct) from the final token; prm: aggregated step scores")
    aggregate: Literal["product", "min", "last"] = Field("product", description="how a PRM's step scores combine")


class RejectionParams(Strict):
    rounds: int = Field(2, gt=0)
    k: int = Field(8, gt=0, description="samples per prompt")
    temperature: float | None = Field(None, ge=0, description="sampling temperature (default: sampling.temperature)")
    min_score: float | None = Field(
        None,
        description="drop best samples scoring below this; default 0.5 with the checker (correct only), else none",
    )
    reward_models: list[RewardModelSpec] = Field(default_factory=list, description="empty: score with the task checker")
    verifier: VerifierSpec | None = Field(None, description="an ORM or PRM scores the samples instead")
    combine: Literal["linear", "safety_gated"] = Field("linear", description="how several reward models combine")
    safety_threshold: float = Field(0.15, gt=0, lt=1, description="Llama 2's gate on sigmoid(safety reward)")
    from_base: bool = Field(True, description="train the base model on the pool each round; false continues")
    finished_only: bool = Field(
        False,
        description="drop responses cut off at sampling.max_new_tokens: as a target one would be trained to end,"
        " with an EOS, where the sampler stopped it",
    )
    prefer_shorter: bool = Field(
        False, description="among samples of equal score keep the one with fewest tokens, not the first drawn"
    )

    @model_validator(mode="after")
    def _gate_needs_both_roles(self) -> RejectionParams:
        roles = sorted(m.role for m in self.reward_models)
        if self.combine == "safety_gated" and roles != ["helpfulness", "safety"]:
            raise ValueError(f"safety_gated needs one helpfulness and one safety reward model, got roles {roles}")
        if self.verifier is not None and self.reward_models:
            raise ValueError("give reward_models or a verifier, not both")
        return self


PARAMS = RejectionParams


def validate(p: RejectionParams, task: Task, cfg: RunConfig) -> None:
    for path in [m.path for m in p.reward_models] + ([p.verifier.path] if p.verifier else []):
        resolve_model_path(path)


def make_scorer(loop: Loop, p: RejectionParams) -> Scorer:
    if p.verifier is not None:
        return build_scorer(p.verifier.kind, p.verifier.path, loop.load, loop.task, p.verifier.aggregate)
    if not p.reward_models:
        return CheckerScorer(loop.task)
    scorers = [build_scorer("rm", m.path, loop.load, loop.task) for m in p.reward_models]
    if p.combine == "safety_gated":
        by_role = {m.role: s for m, s in zip(p.reward_models, scorers)}
        return SafetyGatedCombination(by_role["helpfulness"], by_role["safety"], p.safety_threshold)
    if len(scorers) == 1:
        return scorers[0]
    return LinearCombination(scorers, [m.weight for m in p.reward_models])


def run(loop: Loop) -> None:
    p: RejectionParams = loop.params
    scorer = make_scorer(loop, p)
    min_score = p.min_score if p.min_score is not None or p.reward_models or p.verifier else 0.5
    base = model = loop.base
    loop.evaluate(0, model)
    pool: dict[str, tuple[tuple[float, ...], dict]] = {}
    for t in range(1, p.rounds + 1):
        problems = loop.task.train_problems(t, loop.cfg.seed)
        by_id = {q.id: q for q in problems}
        samples = loop.sample(t, "samples", model, problems, n=p.k, temperature=p.temperature, filter=f"best-of-{p.k}")
        scores = scorer.score([by_id[r["problem_id"]] for r in samples], [r["completion"] for r in samples])
        for r, s in zip(samples, scores):
            if (p.finished_only and not r["finished"]) or (min_score is not None and s < min_score):
                continue
            rank = (s, -r["n_tokens"]) if p.prefer_shorter else (s,)
            if rank > pool.get(r["problem_id"], ((float("-inf"),),))[0]:
                pool[r["problem_id"]] = (
                    rank,
                    {**r, "provenance": {**r["provenance"], "scorer": scorer.name, "score": s}},
                )
        data = [sft_record(r) for _, r in pool.values()]
        model = loop.train(t, base if p.from_base else model, data)
        loop.evaluate(t, model, train_records=len(data))
