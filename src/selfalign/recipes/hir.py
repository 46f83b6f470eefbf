"""HIR (Zhang et al. 2023, The Wisdom of Hindsight Makes Language Models Better Instruction Followers): learn from
every sample, the failures too, by relabelling the instruction to the one the output did follow.

    instructions q+ and q- (the official "Solve question with correct answer." and its opposite), written before the
    prompt: by default q+ is none (the plain prompt) and q- is `wrong`, because a model trained from scratch has
    never seen an instruction, and one it does not understand costs it its answers (a `correct ` prefix takes
    pi_sft from 26% to 0% on 5-digit sums) where the official FLAN-T5 follows them
    for t = 1..T:
        D_t = n samples per training prompt from pi_{t-1} under q+                  (online phase, T = 1.0)
        relabel: a correct output keeps q+ (its negative q-); a wrong one gets q- (its negative q+)
                 ifeval: the prompt rewritten to the constraints the output follows (its negative: the prompt it
                 failed, or, when it followed all, another prompt of the round: HIR's in-batch negatives)
        pi_t = pi_{t-1} trained on D_t with the HIR loss: label-smoothed NLL, a contrastive term against the
               negative instruction and an entropy bonus, on random sub-outputs    (offline phase, `training.hir`)
        evaluate pi_t under q+
"""

from __future__ import annotations

import random

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.loop import Loop
from selfalign.records import Problem
from selfalign.tasks.arithmetic import ArithmeticTask
from selfalign.tasks.base import Task
from selfalign.tasks.ifeval import IfevalTask, hindsight_prompt

SUMMARY = "HIR: hindsight instruction relabelling, every sample trained under the instruction it followed."


class HirParams(Strict):
    rounds: int = Field(3, gt=0, description="online/offline iterations (the official run uses 30)")
    n: int = Field(1, gt=0, description="samples per training prompt and round (the official sample_size is 1)")
    correct: str = Field(
        "",
        description="instruction q+ (the official: solve correctly); '' keeps the plain prompt, which a model that "
        "never saw an instruction still answers",
    )
    wrong: str = Field("wrong", min_length=1, description="instruction q- (the official: solve with a wrong answer)")
    epsilon: float = Field(0.2, ge=0, lt=1, description="label smoothing and contrastive weight eps (official 0.2)")
    entropy_coef: float = Field(1e-3, ge=0, description="entropy bonus weight (official 0.001)")
    label_smoothing: float | None = Field(
        None, ge=0, lt=1, description="label smoothing of the NLL term (default: epsilon, as the official code)"
    )
    sub_outputs: bool = Field(True, description="train on a random span of each output (official)")


PARAMS = HirParams


def validate(p: HirParams, task: Task, cfg: RunConfig) -> None:
    if isinstance(task, IfevalTask) and cfg.task.prompts_path is None:
        return
    if not isinstance(task, ArithmeticTask):
        msg = "hir relabels arithmetic outputs (correct / wrong) or generated ifeval prompts (constraints met)"
        raise InputError("<config>", msg, field="task.name")


def run(loop: Loop) -> None:
    p: HirParams = loop.params

    def instructed(q: Problem, instruction: str = p.correct) -> str:
        return f"{instruction} {q.prompt}" if instruction else q.prompt

    model = loop.base
    loop.evaluate(0, model, prompt=instructed)
    for t in range(1, p.rounds + 1):
        problems = loop.task.train_problems(t, loop.cfg.seed)
        samples = loop.sample(
            t, "samples", model, problems, prompts=[instructed(q) for q in problems], n=p.n, hinted=False
        )
        by_id = {q.id: q for q in problems}
        if isinstance(loop.task, IfevalTask):
            rng = random.Random(loop.run.seed(f"negatives-{t}"))
            data = [hindsight_record(by_id[r["problem_id"]], r, problems, rng) for r in samples]
        else:
            data = [
                {
                    "prompt": instructed(by_id[r["problem_id"]], p.correct if r["correct"] else p.wrong),
                    "negative_prompt": instructed(by_id[r["problem_id"]], p.wrong if r["correct"] else p.correct),
                    "completion": r["completion"],
                    "source": r["id"],
                }
                for r in samples
            ]
        options = {"epsilon": p.epsilon, "entropy_coef": p.entropy_coef, "sub_outputs": p.sub_outputs}
        options["label_smoothing"] = p.label_smoothing
        model = loop.train(t, model, data, trainer="hir", **options)
        correct = sum(r["correct"] for r in samples)
        loop.evaluate(t, model, prompt=instructed, train_records=len(data), relabelled_wrong=len(data) - correct)


def hindsight_record(q: Problem, sample: dict, problems: list[Problem], rng: random.Random) -> dict:
    """An ifeval sample under the prompt it followed; its negative the prompt it failed, or another of the round's."""
    negative = q.prompt
    if sample["correct"]:
        negative = rng.choice([o for o in problems if o.id != q.id]).prompt
    return {
        "prompt": hindsight_prompt(q, sample["completion"]),
        "negative_prompt": negative,
        "completion": sample["completion"],
        "source": sample["id"],
    }
