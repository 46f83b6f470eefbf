"""SPA: Spread Preference Annotation (Kim et al., ICLR 2025; official code kingdy2002/SPA).

    pi_0 = DPO(pi_SFT) on the small gold-labelled seed, reference pi_SFT
           (a task without fixed seed pairs, as ifeval: pairs sampled from pi_SFT on the first prompts, gold-labelled)
    for i = 1..T:
        X_i = a fresh, disjoint chunk of unlabelled prompts
        y_1, y_2 ~ pi_{i-1}(. | x)
        judge: r(x, y) = beta [log pi_{i-1}(y|x) - log pi_SFT(y|x)]; (y_w, y_l), p = sigma(r_w - r_l)
        pi_i = DPO from pi_{i-1}, reference pi_{i-1}, with self-refinement: the least-confident K% of
               pairs get label smoothing alpha (after 20% of steps); confidence uses extrapolated
               logits (1 + lam_i) logits_theta - lam_i logits_ref (de-coupled noise detection)

Baselines in the same harness, with `refine: false`: `judge: gold` (the oracle labeller), `judge: rm` (iterative
DPO judged by an external reward model) and `judge: self` (judged by the model itself as a pairwise LLM judge, both
orders averaged; each iteration pi_{i-1} learns to judge from the same gold seed first, as Self-Rewarding LMs train
on evaluation data).
Ablations: `refine: false` (expansion only) and `lambdas: [0]` (no noise detection).
Each round's eval row carries the judge's accuracy against the hidden gold labels.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfalign.config import RefinementConfig, RunConfig, Strict
from selfalign.errors import InputError
from selfalign.evaluation.metrics import annotation_accuracy
from selfalign.loop import Loop
from selfalign.models import resolve_model_path
from selfalign.records import Problem
from selfalign.scoring.base import GoldRewardScorer, Scorer
from selfalign.scoring.factory import build_scorer
from selfalign.scoring.pairwise import PairwiseJudge, judge_records
from selfalign.tasks.base import Task

SUMMARY = "SPA: expand a small preference seed with self-annotated pairs (implicit reward) and self-refinement."


class SpaParams(Strict):
    iterations: int = Field(3, gt=0, description="self-annotation iterations after the seed DPO")
    prompts_per_iteration: int = Field(1000, gt=0, description="fresh unlabelled prompts per iteration")
    k: int = Field(2, ge=2, description="responses sampled per prompt; the pair is best vs worst")
    temperature: float | None = Field(None, ge=0, description="sampling temperature (default: sampling.temperature)")
    seed_prompts: int | None = Field(
        None,
        gt=0,
        description="for a task without fixed gold pairs (ifeval): the first seed_prompts unlabelled prompts form the"
        " seed, k responses sampled from pi_SFT each, best against worst by the gold reward (gold ties dropped)",
    )
    seed_steps: int | None = Field(None, gt=0, description="steps of the seed DPO (default: training.steps)")
    judge: Literal["implicit", "rm", "self", "gold"] = Field(
        "implicit",
        description="implicit = SPA; rm = an external reward model; self = the model as a pairwise judge; gold = the"
        " task's gold reward (the oracle labeller: what the same pairs give with perfect labels; gold ties dropped)",
    )
    judge_reference: Literal["sft", "previous"] = Field(
        "sft", description="reference of the implicit-reward judge: the SFT model (paper) or pi_{i-2}"
    )
    judge_model: str | None = Field(None, description="reward model directory when judge = rm")
    judge_template: str = Field(
        "{prompt}{first}:{second}:",
        description="judge = self: the pairwise prompt, with {prompt}, {first} and {second}; the default suits the "
        "letters testbed, a chat model wants words (e.g. 'Which response is better, A or B? ...')",
    )
    judge_labels: tuple[str, str] = Field(
        ("a", "b"), description="judge = self: the verdict tokens naming the first / the second response"
    )
    judge_steps: int | None = Field(
        None, gt=0, description="judge = self: SFT steps teaching pi_{i-1} to judge the seed (default training.steps)"
    )
    refine: bool = Field(True, description="self-refinement (label smoothing of low-confidence pairs)")
    lambdas: list[float] = Field(
        [0.5, 0.25, 0.125], min_length=1, description="DND lambda per iteration (the last repeats); [0] turns DND off"
    )
    refinement: RefinementConfig = Field(default_factory=RefinementConfig, description="alpha, K%, threshold")

    @model_validator(mode="after")
    def _judge_inputs(self) -> SpaParams:
        if self.judge == "rm" and not self.judge_model:
            raise ValueError("judge: rm needs judge_model (a trained reward model directory)")
        missing = [f for f in ("{prompt}", "{first}", "{second}") if f not in self.judge_template]
        if missing:
            raise ValueError(f"judge_template lacks {', '.join(missing)}")
        return self


PARAMS = SpaParams


def validate(p: SpaParams, task: Task, cfg: RunConfig) -> None:
    pool = task.unlabelled()
    if pool is None:
        raise InputError("<config>", "SPA needs a task with unlabelled prompts", field="task.name")
    if (task.gold_pairs("seed") is None) != bool(p.seed_prompts):
        has = "has its own gold-labelled seed pairs" if p.seed_prompts else "has no gold-labelled seed pairs"
        fix = "leave it unset" if p.seed_prompts else "set it to gold-label pairs sampled from pi_SFT"
        raise InputError("<config>", f"task {task.name} {has}: {fix}", field="params.seed_prompts")
    needed = (p.seed_prompts or 0) + p.iterations * p.prompts_per_iteration
    if len(pool) < needed:
        raise InputError(
            "<config>",
            f"{p.seed_prompts or 0} seed prompts + {p.iterations} iterations x {p.prompts_per_iteration} prompts need"
            f" {needed} unlabelled prompts; the task has {len(pool)}",
            field="params.prompts_per_iteration",
        )
    if p.judge_model:
        resolve_model_path(p.judge_model)


def make_judge(loop: Loop, p: SpaParams, round: int, model: str, previous: str, seed: list[dict]) -> Scorer:
    if p.judge == "rm":
        return build_scorer("rm", p.judge_model, loop.load, loop.task)
    if p.judge == "gold":
        return GoldRewardScorer(loop.task)
    if p.judge == "self":
        lessons = judge_records(seed, p.judge_template, p.judge_labels)
        judge = loop.train(round, model, lessons, steps=p.judge_steps, name="judge")
        judge_policy = loop.load("policy", judge)
        return PairwiseJudge(
            judge_policy, p.judge_template, p.judge_labels, engine=loop.judge_engine(judge_policy, judge)
        )
    reference = loop.base if p.judge_reference == "sft" else previous
    beta = loop.cfg.preference.beta
    return build_scorer(
        "implicit", model, loop.load, loop.task, reference=reference, beta=beta, engine_for=loop.logprob_engine
    )


def judged(loop: Loop, round: int, samples: list[dict], problems: list[Problem], scorer: Scorer) -> list[dict]:
    """`Loop.judge`'s pairs, less gold ties when the judge is the gold reward: an oracle does not label a tie."""
    pairs = loop.judge(round, samples, problems, scorer)
    return [pair for pair in pairs if pair["gold_agrees"]] if isinstance(scorer, GoldRewardScorer) else pairs


def run(loop: Loop) -> None:
    p: SpaParams = loop.params
    sft = loop.base
    loop.evaluate(0, sft)
    pool, previous = loop.task.unlabelled(), sft
    if p.seed_prompts:
        seed_problems, pool = pool[: p.seed_prompts], pool[p.seed_prompts :]
        samples = loop.sample(1, "samples", sft, seed_problems, n=p.k, temperature=p.temperature, filter="pairs")
        seed = judged(loop, 1, samples, seed_problems, GoldRewardScorer(loop.task))
    else:
        seed = loop.pairs(1, "seed")
    model = loop.train(1, sft, seed, steps=p.seed_steps, trainer="pairs")
    loop.evaluate(1, model, train_pairs=len(seed))
    for i in range(1, p.iterations + 1):
        t = i + 1
        prompts = pool[(i - 1) * p.prompts_per_iteration : i * p.prompts_per_iteration]
        samples = loop.sample(t, "samples", model, prompts, n=p.k, temperature=p.temperature, filter="pairs")
        pairs = judged(loop, t, samples, prompts, make_judge(loop, p, t, model, previous, seed))
        lam = p.lambdas[min(i, len(p.lambdas)) - 1]
        refinement = p.refinement.model_copy(update={"lam": lam}) if p.refine else None
        previous, model = model, loop.train(t, model, pairs, trainer="pairs", refinement=refinement)
        loop.evaluate(t, model, train_pairs=len(pairs), annotation_accuracy=annotation_accuracy(pairs))
