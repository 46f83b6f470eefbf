"""PRM active learning (Lightman et al. 2023, PRM800K's data collection): spend the step-labelling budget on the
solutions the current PRM finds most convincing among those with a wrong final answer.

    pool = k samples per training problem from the generator G;  test = N samples per held-out problem
    ORM  = trained on the whole pool's final-answer labels (uniformly sampled solutions, as the paper's ORM)
    for t = 1..T, for each selection:
        random: K solutions drawn uniformly from the unlabelled pool
        active: K from the unlabelled pool scored by PRM_{t-1} (product of step scores): the highest-scored
                with a wrong final answer (convincing wrong answers); at t = 1, with no PRM yet, random
        L += the K solutions with the checker's step labels up to the first error (the checker is the labeller)
        PRM_t = a PRM trained from G on L
    test: each PRM_t's AUC, step quality (first-error accuracy) and best-of-N against majority vote and the ORM
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.evaluation.best_of_n import prm_score, selection_metrics
from selfalign.loop import Loop
from selfalign.records import outcome_record
from selfalign.run import round_dir
from selfalign.stepwise import checker_step_record
from selfalign.tasks.base import Task
from selfalign.verifier_eval import scorer_factories, selection_set

SUMMARY = "PRM active learning: label convincing wrong answers (PRM800K) vs random solutions at equal budget."
Selection = Literal["random", "active"]


class PrmActiveParams(Strict):
    k: int = Field(16, gt=0, description="samples per training problem in the unlabelled pool")
    iterations: int = Field(4, gt=0, description="labelling rounds T")
    budget: int = Field(200, gt=0, description="solutions step-labelled per round, K")
    selections: list[Selection] = Field(["random", "active"], min_length=1, description="selection strategies")
    verifier_steps: int | None = Field(None, gt=0, description="training steps per PRM / ORM (default training.steps)")
    verifier_lr: float | None = Field(None, gt=0, description="learning rate of the verifiers (default training.lr)")
    test: str | None = Field(None, description="eval set to select on (default: the last one)")
    n: int = Field(64, gt=0, description="samples per test problem; curves for N = 1, 2, 4, ... n")


PARAMS = PrmActiveParams


def validate(p: PrmActiveParams, task: Task, cfg: RunConfig) -> None:
    selection_set(task, p.test)


def run(loop: Loop) -> None:
    p: PrmActiveParams = loop.params
    generator = loop.base
    problems = loop.task.train_problems(1, loop.cfg.seed)
    pool = loop.sample(0, "pool", generator, problems, n=p.k, filter="none (unlabelled pool)")
    test = selection_set(loop.task, p.test)
    test_problems = loop.task.eval_sets()[test]
    test_samples = loop.sample(0, "test_samples", generator, test_problems, n=p.n)

    def train(t: int, name: str, records: list[dict], trainer: str) -> str:
        return loop.train(t, generator, records, steps=p.verifier_steps, trainer=trainer, name=name, lr=p.verifier_lr)

    verifiers = {"orm": ("orm", train(0, "orm", [outcome_record(r) for r in pool], "orm"))}
    report(loop, 0, test_samples, test_problems, test, verifiers, labelled=0)

    by_id = {r["id"]: r for r in pool}
    labelled: dict[str, list[str]] = {s: [] for s in p.selections}
    for t in range(1, p.iterations + 1):
        for s in p.selections:
            done = set(labelled[s])
            unlabelled = [r for r in pool if r["id"] not in done]
            if s == "active" and t > 1:
                scorer = scorer_factories(loop, {"prm": verifiers["prm-active"]}, reference=generator)
                scored = loop.score_samples(t, unlabelled, problems, scorer, name="pool_scores-active")
                labelled[s] += convincing_wrong(scored, p.budget)
            else:
                rng = random.Random(loop.run.seed(f"{round_dir(t)}/select-random"))  # both start from one draw
                labelled[s] += [r["id"] for r in rng.sample(unlabelled, min(p.budget, len(unlabelled)))]
            steps = [checker_step_record(by_id[i], loop.task.steps(by_id[i]["completion"])) for i in labelled[s]]
            verifiers[f"prm-{s}"] = ("prm", train(t, f"prm-{s}", steps, "prm"))
        report(loop, t, test_samples, test_problems, test, verifiers, labelled=len(labelled[p.selections[0]]))


def convincing_wrong(scored: list[dict], budget: int) -> list[str]:
    """The ids of the `budget` wrong-answer solutions the PRM scores highest (fewer if the pool has fewer)."""
    wrong = [r for r in scored if not r["correct"]]
    wrong.sort(key=lambda r: prm_score(r, "prm", "product"), reverse=True)
    return [r["id"] for r in wrong[:budget]]


def report(loop: Loop, t: int, samples: list[dict], problems: list, test: str, verifiers: dict, labelled: int) -> None:
    """Round t's metrics: best-of-N curves, AUCs and PRM step quality on the test samples; `accuracy` holds the
    solve rate at N = n of majority vote, the ORM and each PRM (by product)."""
    scored = loop.score_samples(t, samples, problems, scorer_factories(loop, verifiers, reference=loop.base))
    metrics = selection_metrics(scored, test, loop.params.n, probabilities=["orm"])
    curves, n = metrics["best_of_n"], loop.params.n
    names = ["majority vote", "orm", *(f"{v} (product)" for v in verifiers if v.startswith("prm"))]
    accuracy = {f"best-of-{n} {name}": curves[name][n] for name in names}
    loop.record(
        t, {"accuracy": accuracy, "labelled_solutions": labelled, "pass@n": curves["pass@k (oracle)"][n]} | metrics
    )
