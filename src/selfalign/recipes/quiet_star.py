"""Quiet-STaR (Zelikman et al. 2024): think before every token of plain text, learned by REINFORCE on how much
each thought helps predict the next tokens (the algorithm is in `training.quiet_star`).

    corpus = sums stated directly, "<prompt>?<answer, units digit first>"  (the hard tokens: the answer digits)
           + worked sums, "<prompt>=<scratchpad>", the plain text the base model knows   (`worked_fraction`)
    M = Quiet-STaR(M_0, corpus) with thoughts of t tokens    (t = 0: the same corpus with the LM loss, no thoughts)
    held-out direct sums: NLL of the answer digits, exact match of the greedy answer (a thought before every token),
    seconds per generated token

Written units digit first, each answer digit is one scratchpad step (about 11 tokens of thought) away from what
the prompt gives, so a thought can carry the computation that predicting the digit directly must do in one step.
"""

from __future__ import annotations

import random

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.loop import Loop
from selfalign.tasks.arithmetic import ArithmeticTask, solution
from selfalign.tasks.base import Problem, Task

SUMMARY = "Quiet-STaR: thoughts before every token, trained by REINFORCE on text that states sums directly."


class QuietStarParams(Strict):
    thought_tokens: int = Field(
        8, ge=0, description="t, tokens sampled in each thought between its start and end tokens (official "
        "n_ahead - 3 = 9); 0 trains the same text without thoughts (the baseline)"
    )  # fmt: skip
    n_talk: int = Field(4, gt=0, description="true tokens teacher-forced after each thought (official n_ahead_talk)")
    n_thoughts: int = Field(2, gt=0, description="thoughts per position; REINFORCE's baseline is their mean (n_passes)")
    policy_weight: float = Field(1e6, ge=0, description="weight of the REINFORCE term (official policy_loss_beta)")
    start_init: str | None = Field(
        "=", description="token whose embedding starts <|startthought|> (official: '---'); '=' is where the "
        "arithmetic model starts a scratchpad; none: the mean embedding"
    )  # fmt: skip
    end_init: str | None = Field(None, description="token whose embedding starts <|endthought|>; none: the mean")
    worked_fraction: float = Field(0.5, ge=0, lt=1, description="share of the corpus that is worked sums")


PARAMS = QuietStarParams
EVALUATES_TASK = False  # direct answers are its evaluation, not the task's sampled scratchpads


def validate(p: QuietStarParams, task: Task, cfg: RunConfig) -> None:
    if not isinstance(task, ArithmeticTask):
        raise InputError("<config>", "quiet_star builds its corpus from the arithmetic task", field="task.name")


def direct(q: Problem) -> tuple[str, str]:
    return q.prompt[:-1] + "?", q.answer[::-1]


def run(loop: Loop) -> None:
    p: QuietStarParams = loop.params
    held_out = [q for qs in loop.task.eval_sets().values() for q in qs]
    prompts, answers = zip(*map(direct, held_out))
    loop.evaluate_direct(0, loop.base, list(prompts), list(answers))

    rng = random.Random(loop.cfg.seed)
    corpus = []
    for q in loop.task.train_problems(1, loop.cfg.seed):
        prompt, completion = (q.prompt, solution(q)) if rng.random() < p.worked_fraction else direct(q)
        corpus.append({"prompt": "", "completion": prompt + completion})
    if p.thought_tokens == 0:
        model = loop.train(1, loop.base, corpus)
    else:
        options = p.model_dump(exclude={"worked_fraction"})
        model = loop.train(1, loop.base, corpus, trainer="quiet_star", **options)
    loop.evaluate_direct(1, model, list(prompts), list(answers), thought_tokens=p.thought_tokens, texts=len(corpus))
