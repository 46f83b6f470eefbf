"""Constitutional AI (Bai et al. 2022b): SL-CAI, then RL-CAI, with principles from a constitution file.

    SL-CAI, on `prompts` training prompts x:
        y_0 ~ M(x)
        for r = 1..R: (critique request c, revision request v) = a principle drawn at random per prompt and round
                      critique_r = M(critique prompt(x, y_{r-1}, c))
                      y_r        = M(revision prompt(x, y_{r-1}, critique_r, v))
        M_SL = SFT(M, {(x, y_R)})                       each y_r graded: the gold reward after r revisions
    RL-CAI, on `rl_prompts` fresh prompts x':
        y_a, y_b ~ M_SL(x');  P(y_a better) = M_SL as a pairwise judge with the comparison principles (sampled, or
        ensembled), both orders averaged
        M_RL = DPO(M_SL, pairs with soft labels)

Reported: the gold reward and accuracy of y_0..y_R; the start, M_SL and M_RL on the held-out prompts; the RL-CAI
labeller against gold. The paper's SL-CAI also mixes in helpful responses and starts from a pretrained model;
here it fine-tunes the start model on the revisions alone.
"""

from __future__ import annotations

import random

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.evaluation.metrics import graded_summary
from selfalign.loop import Loop
from selfalign.scoring.constitution import check_template, load_constitution
from selfalign.scoring.pairwise import PAIRWISE_FIELDS, PairwiseJudge
from selfalign.tasks.base import Task

SUMMARY = "Constitutional AI: SL-CAI critique -> revision rounds with random principles, SFT, then RL-CAI (DPO)."
FIELDS = {"prompt", "response", "critique", "request"}


class CaiParams(Strict):
    constitution: str = Field(description="JSONL of principles: critique/revision pairs (SL), comparisons (RL)")
    revisions: int = Field(4, ge=1, description="R: critique -> revision rounds per response")
    prompts: int = Field(64, gt=0, description="training prompts of SL-CAI")
    rl_prompts: int = Field(0, ge=0, description="fresh prompts labelled for RL-CAI (0: no RL-CAI)")
    temperature: float = Field(0.8, ge=0, description="sampling temperature of y_0, critiques, revisions and pairs")
    critique_tokens: int = Field(96, gt=0, description="most tokens of a critique")
    few_shot: str = Field("", description="text put before every critique and revision prompt (few-shot examples)")
    critique_template: str = Field(
        "Request: {prompt}\n\nResponse:\n{response}\n\n{request}",
        description="the critique prompt: {prompt}, {response}, {request} (the principle's critique request)",
    )
    revision_template: str = Field(
        "Request: {prompt}\n\nResponse:\n{response}\n\nCritique:\n{critique}\n\n{request} Reply with the new "
        "response only.",
        description="the revision prompt: {prompt}, {response}, {critique}, {request} (the revision request)",
    )
    judge_template: str = Field(
        "Consider this request and two responses to it.\n\nRequest: {prompt}\n\n{principle}\n\nOptions:\n"
        "(A) {first}\n\n(B) {second}\n\nAnswer A or B.",
        description="RL-CAI's feedback prompt (CAI's 'Options: (A) ... (B) ... The answer is:')",
    )
    judge_labels: tuple[str, str] = Field(("A", "B"), description="single tokens naming the two options")
    ensemble: bool = Field(True, description="RL-CAI labels averaged over every comparison principle")
    sl_steps: int | None = Field(None, gt=0, description="SL-CAI SFT steps (default training.steps)")


PARAMS = CaiParams


def validate(p: CaiParams, task: Task, cfg: RunConfig) -> None:
    check_template(p.critique_template, FIELDS, {"response", "request"}, "params.critique_template")
    check_template(p.revision_template, FIELDS, {"response", "critique", "request"}, "params.revision_template")
    check_template(p.judge_template, PAIRWISE_FIELDS, {"first", "second", "principle"}, "params.judge_template")
    constitution = load_constitution(p.constitution)
    if not constitution.revisions:
        raise InputError(p.constitution, "SL-CAI needs critique/revision principles", field="critique")
    if p.rl_prompts and not constitution.comparisons:
        raise InputError(p.constitution, "RL-CAI needs comparison principles", field="comparison")
    have = len(task.train_problems(1, cfg.seed))
    if have < p.prompts + p.rl_prompts:
        raise InputError(
            "<config>",
            f"params.prompts + params.rl_prompts = {p.prompts + p.rl_prompts} prompts, the task has {have}",
            field="params.prompts",
        )


def run(loop: Loop) -> None:
    p: CaiParams = loop.params
    constitution = load_constitution(p.constitution)
    start = loop.base
    loop.evaluate(0, start)
    problems = loop.task.train_problems(1, loop.cfg.seed)
    sl = problems[: p.prompts]

    # SL-CAI: critique -> revision rounds, each with a principle drawn per prompt
    responses = loop.sample(1, "responses", start, sl, n=1, temperature=p.temperature, filter="none")
    chain = {"revision 0": graded_summary(responses)}
    for r in range(1, p.revisions + 1):
        rng = random.Random(loop.run.seed(f"principles-{r}"))
        drawn = [rng.choice(constitution.revisions) for _ in sl]
        asks = [
            p.few_shot + p.critique_template.format(prompt=q.prompt, response=y["completion"], request=c, critique="")
            for q, y, (c, _) in zip(sl, responses, drawn)
        ]
        critiques = loop.generate(
            1,
            f"critiques-{r}",
            start,
            [y["id"] for y in responses],
            asks,
            temperature=p.temperature,
            max_new_tokens=p.critique_tokens,
        )
        asks = [
            p.few_shot
            + p.revision_template.format(prompt=q.prompt, response=y["completion"], critique=c["completion"], request=v)
            for q, y, c, (_, v) in zip(sl, responses, critiques, drawn)
        ]
        responses = loop.sample(1, f"revisions-{r}", start, sl, asks, n=1, temperature=p.temperature, hinted=False)
        chain[f"revision {r}"] = graded_summary(responses)
    targets = [{"prompt": y["prompt"], "completion": y["completion"], "source": y["id"]} for y in responses]
    m_sl = loop.train(1, start, targets, steps=p.sl_steps)
    loop.evaluate(1, m_sl, sl_chain=chain, train_records=len(targets))
    if not p.rl_prompts:
        return

    # RL-CAI: pairs from M_SL labelled by M_SL with the comparison principles, then DPO
    rl = problems[p.prompts : p.prompts + p.rl_prompts]
    samples = loop.sample(2, "samples", m_sl, rl, n=2, temperature=p.temperature, filter="pairs")
    judge_policy = loop.load("policy", m_sl)
    judge = PairwiseJudge(
        judge_policy,
        p.judge_template,
        p.judge_labels,
        batch_size=loop.cfg.sampling.batch_size,
        principles=constitution.comparisons,
        ensemble=p.ensemble,
        seed=loop.run.seed("comparisons"),
        engine=loop.judge_engine(judge_policy, m_sl),
    )
    pairs, summary = loop.label_pairs(2, samples, judge, soft=True)
    m_rl = loop.train(2, m_sl, pairs, trainer="pairs")
    loop.evaluate(2, m_rl, train_pairs=len(pairs), labeller=summary["labeller"])
