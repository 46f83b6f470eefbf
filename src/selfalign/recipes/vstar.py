"""V-STaR: training verifiers for self-taught reasoners (Hosseini et al. 2024), with the verifiers it is
measured against and test-time selection.

    D_GEN = D_VER = {}                       # G_0 is the SFT model
    for t = 1..T:
        sample k solutions per training problem from G_{t-1}; label each by the task checker
        D_GEN += the correct ones;  D_VER += all of them, with their labels
        G_t = SFT(G_{t-1} (or the SFT model), D_GEN)
    V = DPO(pi_SFT) on correct x incorrect pairs of D_VER, reference pi_SFT
        score(x, y) = log pi_V(y|x) - log pi_SFT(y|x)       # the implicit reward; beta cannot change a ranking
    on the same D_VER, for comparison:
        ORM     final-answer correctness (Cobbe et al. 2021)
        PRM     the checker's step labels up to the first error (Lightman et al. 2023)
        PRM-MC  Monte-Carlo step labels: a step is good if any of N rollouts from it reaches the gold
                answer (Math-Shepherd, hard estimation), rollouts by G_T
    test: N samples per held-out problem from G_T; best-of-k by every verifier, majority and weighted vote,
          the unbiased estimator for k = 1..N
"""

from __future__ import annotations

import random
from itertools import product
from typing import Literal

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.evaluation.best_of_n import selection_metrics
from selfalign.evaluation.metrics import by_problem
from selfalign.filters import first_correct
from selfalign.loop import Loop
from selfalign.records import Problem, outcome_record, pair_record, sft_record, stepwise_record
from selfalign.scoring.factory import ScorerKind
from selfalign.stepwise import checker_step_record, mc_step_labels, step_prefixes
from selfalign.tasks.base import Task
from selfalign.verifier_eval import outcome_verifiers, scorer_factories, selection_set

SUMMARY = "V-STaR: DPO verifier from self-generated correct/incorrect samples, vs ORM, PRM and PRM-MC, best-of-N."
Verifier = Literal["vstar", "orm", "prm", "prm_mc"]


class VStarParams(Strict):
    iterations: int = Field(2, gt=0, description="generator iterations T")
    k: int = Field(4, gt=0, description="samples per training problem per iteration")
    from_base: bool = Field(False, description="fine-tune the SFT model each iteration (paper); false continues")
    verifiers: list[Verifier] = Field(
        ["vstar", "orm", "prm", "prm_mc"], description="verifiers to train on D_VER: vstar | orm | prm | prm_mc"
    )
    pairs_per_problem: int = Field(4, gt=0, description="correct x incorrect pairs kept per problem (a random subset)")
    verifier_steps: int | None = Field(None, gt=0, description="training steps per verifier (default training.steps)")
    verifier_lr: float | None = Field(None, gt=0, description="learning rate of the verifiers (default training.lr)")
    mc_rollouts: int = Field(8, gt=0, description="Math-Shepherd rollouts from each step prefix")
    mc_solutions: int = Field(300, gt=0, description="D_VER solutions labelled by Monte Carlo (a random subset)")
    test: str | None = Field(None, description="eval set to select on (default: the last one)")
    n: int = Field(64, gt=0, description="samples per test problem; curves for k = 1, 2, 4, ... n")
    test_temperature: float = Field(1.0, ge=0, description="sampling temperature of the test samples")


PARAMS = VStarParams


def validate(p: VStarParams, task: Task, cfg: RunConfig) -> None:
    selection_set(task, p.test)


def run(loop: Loop) -> None:
    p: VStarParams = loop.params
    sft = model = loop.base
    loop.evaluate(0, model)
    d_gen: list[dict] = []
    d_ver: list[dict] = []
    by_id: dict[str, Problem] = {}
    for t in range(1, p.iterations + 1):
        problems = loop.task.train_problems(t, loop.cfg.seed)
        by_id.update((q.id, q) for q in problems)
        samples = loop.sample(t, "samples", model, problems, n=p.k, filter="none (labelled: D_VER)")
        d_gen += [sft_record(r) for r in first_correct(samples, p.k)]
        d_ver += samples
        model = loop.train(t, sft if p.from_base else model, d_gen)
        loop.evaluate(t, model, train_records=len(d_gen), d_ver=len(d_ver))

    T = p.iterations

    def train_verifier(name: str, records: list[dict], trainer: str) -> str:
        """Each verifier starts from the SFT model, with its own steps and learning rate."""
        return loop.train(T, sft, records, steps=p.verifier_steps, trainer=trainer, name=name, lr=p.verifier_lr)

    trained: dict[str, tuple[ScorerKind, str]] = {}  # verifier name -> (kind, checkpoint)
    if "vstar" in p.verifiers:
        pairs = correct_incorrect_pairs(d_ver, p.pairs_per_problem, loop.cfg.seed)
        trained["vstar"] = ("implicit", train_verifier("vstar", pairs, "pairs"))
    if "orm" in p.verifiers:
        outcomes = [outcome_record(r) for r in d_ver]
        trained["orm"] = ("orm", train_verifier("orm", outcomes, "orm"))
    if "prm" in p.verifiers:
        records = [checker_step_record(r, loop.task.steps(r["completion"])) for r in d_ver]
        trained["prm"] = ("prm", train_verifier("prm", records, "prm"))
    if "prm_mc" in p.verifiers:
        records = monte_carlo_step_records(loop, T, model, d_ver, by_id, p)
        trained["prm_mc"] = ("prm", train_verifier("prm_mc", records, "prm"))

    test = selection_set(loop.task, p.test)
    problems = loop.task.eval_sets()[test]
    samples = loop.sample(T, "test_samples", model, problems, n=p.n, temperature=p.test_temperature)
    scored = loop.score_samples(T, samples, problems, scorer_factories(loop, trained, reference=sft))
    selection = selection_metrics(scored, test, p.n, probabilities=outcome_verifiers(trained))
    loop.evaluate(T, model, train_records=len(d_gen), d_ver=len(d_ver), **selection)


def correct_incorrect_pairs(d_ver: list[dict], per_problem: int, seed: int) -> list[dict]:
    """V-STaR's verifier data: (x, y+, y-) from the correct x incorrect products of each problem's samples,
    a seeded random subset of at most `per_problem` of them."""
    rng = random.Random(seed)
    pairs = []
    for rows in by_problem(d_ver).values():
        right = list(dict.fromkeys(r["completion"] for r in rows if r["correct"]))
        wrong = list(dict.fromkeys(r["completion"] for r in rows if not r["correct"]))
        combos = list(product(right, wrong))
        for chosen, rejected in rng.sample(combos, min(per_problem, len(combos))):
            pairs.append(pair_record(rows[0]["prompt"], chosen, rejected, id=rows[0]["problem_id"]))
    return pairs


def monte_carlo_step_records(
    loop: Loop, round: int, model: str, d_ver: list[dict], problems: dict[str, Problem], p: VStarParams
) -> list[dict]:
    """Math-Shepherd hard labels for a random subset of D_VER: step i is good when any of N rollouts from the
    prefix ending at step i reaches the gold answer. The last step needs no rollout: the solution's own answer."""
    with_steps = [(r, steps) for r in d_ver if (steps := loop.task.steps(r["completion"]))]
    chosen = random.Random(loop.cfg.seed).sample(with_steps, min(p.mc_solutions, len(with_steps)))
    todo, prefills = [], []
    for r, steps in chosen:
        prefixes = step_prefixes(steps)[:-1]
        todo += [problems[r["problem_id"]]] * len(prefixes)
        prefills += prefixes
    rollouts = loop.sample(
        round, "mc_rollouts", model, todo, n=p.mc_rollouts, prefills=prefills, filter="none (Monte-Carlo step labels)"
    )
    answers = [[r["answer"] for r in rollouts[i * p.mc_rollouts : (i + 1) * p.mc_rollouts]] for i in range(len(todo))]
    records, at = [], 0
    for r, steps in chosen:
        per_step = answers[at : at + len(steps) - 1] + [[r["answer"]]]
        at += len(steps) - 1
        labels = [bool(v) for v in mc_step_labels(per_step, r["gold"], "hard")]
        records.append(stepwise_record(r["prompt"], steps, labels, r["id"]))
    return records
