"""RLAIF (Lee et al. 2024): preference labels from an AI labeller instead of humans, then DPO (direct) or a reward
model trained on the soft labels (distilled; optimise it with the `ppo` or `rejection` recipe: `scorer_path`).

    judge J  = `judge_model` (default: the policy's start, a same-size labeller), optionally after evaluation
               fine-tuning (EFT, Self-Rewarding LMs) on K gold-labelled judgements in its own prompt format:
               K pairs of the policy's samples on other prompts, each shown in both orders
    for x in the training prompts: y_a, y_b ~ pi_sft(.|x)
    p  = P(y_a better) = the label tokens' renormalised probabilities, averaged over both orders (`swap`); or the
         gold reward's verdict (`labeller: gold`, the RLHF analogue)
    pairs: chosen = the preferred one; soft labels keep epsilon = 1 - max(p, 1 - p) in the DPO loss, hard ones none
    direct:    pi = DPO(pi_sft, pairs)
    distilled: r_phi = argmin E[-(1 - eps) log sigma(r(y_w) - r(y_l)) - eps log sigma(r(y_l) - r(y_w))] from pi_sft,
               with its accuracy on the task's held-out gold pairs

Reported: the labeller's accuracy against gold (averaged and per order), flip rate, first-position rate, ECE; the
policy's gold reward and win rate before and after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.loop import Loop
from selfalign.models import resolve_model_path
from selfalign.scoring.constitution import check_template, load_constitution
from selfalign.scoring.pairwise import PAIRWISE_FIELDS, PairwiseJudge, judge_records
from selfalign.tasks.base import Task

SUMMARY = "RLAIF: pairs of policy samples labelled by an LLM judge (off the shelf or EFT) or by gold, then DPO."


class RlaifParams(Strict):
    labeller: Literal["judge", "gold"] = Field("judge", description="an LLM judge, or the gold reward (RLHF)")
    mode: Literal["direct", "distilled"] = Field(
        "direct", description="direct: DPO on the labels; distilled: a reward model on them (round-001/reward_model)"
    )
    judge_model: str | None = Field(None, description="the judge's checkpoint (default: the policy's start)")
    eft_pairs: int = Field(
        0, ge=0, description="K: gold judgements to fine-tune the judge on first (0 = off the shelf)"
    )
    eft_prompts: int = Field(0, ge=0, description="prompts sampled (2 responses each) for the EFT judgements")
    eft_steps: int | None = Field(None, gt=0, description="EFT steps (default training.steps)")
    prompts: int = Field(256, gt=0, description="training prompts labelled for the policy (one pair each)")
    template: str = Field(
        "Which response is better?\n\nRequest: {prompt}\n\nResponse 1:\n{first}\n\nResponse 2:\n{second}\n\n"
        "{principle}Answer with 1 or 2 only.",
        description="the pairwise judge prompt: {prompt}, {first}, {second} and optionally {principle}",
    )
    labels: tuple[str, str] = Field(("1", "2"), description="single tokens naming the first and the second response")
    cot_template: str | None = Field(
        None,
        description="chain of thought: the judge decodes a rationale from this prompt up to {rationale}, then its "
        "label is read after the whole (labels clamped to [0.4, 0.6], as CAI)",
    )
    cot_tokens: int = Field(64, gt=0, description="most tokens of a rationale")
    constitution: str | None = Field(None, description="JSONL of principles: the comparison ones fill {principle}")
    ensemble: bool = Field(False, description="average over every comparison principle instead of sampling one")
    swap: bool = Field(True, description="judge both orders and average (RLAIF's position-bias fix)")
    soft: bool = Field(True, description="soft labels (per-pair label smoothing 1 - p) instead of hard ones")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of the pairs")
    gold_flip: float = Field(
        0.0, ge=0, le=1, description="labeller gold: reverse each label with this probability (a known accuracy)"
    )


PARAMS = RlaifParams


def validate(p: RlaifParams, task: Task, cfg: RunConfig) -> None:
    check_template(p.template, PAIRWISE_FIELDS, {"first", "second"}, "params.template")
    if p.cot_template is not None:
        fields = PAIRWISE_FIELDS | {"rationale"}
        check_template(p.cot_template, fields, {"first", "second", "rationale"}, "params.cot_template")
    if p.constitution is not None:
        load_constitution(p.constitution)
    if p.judge_model is not None:
        resolve_model_path(p.judge_model)
    if p.gold_flip and p.labeller != "gold":
        raise InputError("<config>", "flips the gold labeller's labels only", field="params.gold_flip")
    if p.eft_pairs and p.labeller == "gold":
        raise InputError("<config>", "EFT trains a judge; the gold labeller has none", field="params.eft_pairs")
    if p.eft_pairs and p.eft_prompts < p.eft_pairs:
        raise InputError(
            "<config>", f"needs at least eft_pairs ({p.eft_pairs}) prompts, one pair each", field="params.eft_prompts"
        )
    have = len(task.train_problems(1, cfg.seed))
    if have < p.prompts + p.eft_prompts:
        raise InputError(
            "<config>",
            f"params.prompts + params.eft_prompts = {p.prompts + p.eft_prompts} prompts, the task has {have}",
            field="params.prompts",
        )


def run(loop: Loop) -> None:
    p: RlaifParams = loop.params
    sft = loop.base
    loop.evaluate(0, sft)
    problems = loop.task.train_problems(1, loop.cfg.seed)
    judge, eft_judgements = None, 0
    if p.labeller == "judge":
        judge_model = p.judge_model or sft
        if p.eft_pairs:  # EFT: the judge learns its prompt format from K gold-labelled judgements
            eft = problems[p.prompts : p.prompts + p.eft_prompts]
            samples = loop.sample(1, "eft_samples", sft, eft, n=2, temperature=p.temperature, filter="none")
            gold, _ = loop.label_pairs(1, samples, None, soft=False, name="eft_pairs")
            eft_judgements = len(gold[: p.eft_pairs])  # fewer than K when too many sampled pairs tie on gold
            lessons = judge_records(gold[: p.eft_pairs], p.template, p.labels)
            judge_model = loop.train(1, judge_model, lessons, steps=p.eft_steps, name="judge")
        principles = load_constitution(p.constitution).comparisons if p.constitution else None
        judge_policy = loop.load("policy", judge_model)
        judge = PairwiseJudge(
            judge_policy,
            p.template,
            p.labels,
            batch_size=loop.cfg.sampling.batch_size,
            principles=principles,
            ensemble=p.ensemble,
            cot_template=p.cot_template,
            decode=rationales(loop, judge_model) if p.cot_template else None,
            seed=loop.run.seed("principles"),
            swap=p.swap,
            engine=loop.judge_engine(judge_policy, judge_model),
        )
    samples = loop.sample(1, "samples", sft, problems[: p.prompts], n=2, temperature=p.temperature, filter="pairs")
    pairs, summary = loop.label_pairs(1, samples, judge, soft=p.soft, flip=p.gold_flip)
    extra = {"train_pairs": len(pairs), "labeller": summary["labeller"], "eft_judgements": eft_judgements}
    if p.mode == "distilled":
        rm = loop.train(1, sft, pairs, trainer="reward", name="reward_model")
        if (held_out := loop.task.eval_pairs()) is not None:
            loop.evaluate_pairs(1, rm, held_out, **extra)
        else:
            loop.record(1, extra)
        return
    model = loop.train(1, sft, pairs, trainer="pairs")
    loop.evaluate(1, model, **extra)


def rationales(loop: Loop, judge_model: str) -> Callable[[list[str]], list[str]]:
    """The judge's greedy rationales, one stage per presentation order (`rationales-1`, `rationales-2`)."""
    calls = iter(range(1, 3))

    def decode(prompts: list[str]) -> list[str]:
        name, n_tokens = f"rationales-{next(calls)}", loop.params.cot_tokens
        rows = loop.generate(
            1, name, judge_model, [str(i) for i in range(len(prompts))], prompts, max_new_tokens=n_tokens
        )
        return [r["completion"] for r in rows]

    return decode
