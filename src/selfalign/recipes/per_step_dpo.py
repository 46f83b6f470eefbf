"""Per-step DPO from Monte-Carlo critical steps (Setlur et al. 2024, "RL on incorrect synthetic data scales the
efficiency of LLM math reasoning by eight-fold", §5-6).

    pi_sft = the starting model (fine-tuned on synthetic positives)
    sample k solutions for each of the N training problems x from pi_sft; grade them with the checker
    for each distinct incorrect solution y- = (y_1 .. y_L) (at most `negatives` per problem):
        Q_i = value of the prefix y_{1:i}: K rollouts of pi_sft from it, 1 if any reaches the answer
              (pi~ = BoK(pi_sft), K = 5), or their success rate
        Q_0 = the same over the problem's own k samples;  Q_L = r(y-) = 0
        c = first argmin_i Q_i - Q_{i-1}                     the critical step, the "first pit"
        pair (x, y+, y_{1:c}), y+ a correct solution:       pairs=solution: any of the problem's (the paper's)
                                                             pairs=step: a rollout that continues y_{1:c-1},
                                                             so the pair differs from step c on
    pi = DPO(pi_sft) on the pairs, reference pi_sft

The shared prefix y_{1:c-1} has the same log-probs on both sides, so with DPO (and its robust / NLL variants,
not IPO's token averages) a `step` pair is exactly DPO on (prefix + good step, prefix + critical step) with the
prefix as the prompt. Baselines at equal problems: pairs=whole is plain DPO on (correct, incorrect) whole
solutions, no rollouts; the `rft` recipe is SFT on the self-generated positives.
"""

from __future__ import annotations

from itertools import cycle
from statistics import mean
from typing import Literal

from pydantic import Field

from selfalign.config import Strict
from selfalign.evaluation.metrics import by_problem
from selfalign.loop import Loop
from selfalign.records import pair_record
from selfalign.stepwise import critical_step, mc_step_labels, step_prefixes

SUMMARY = "Per-step DPO (Setlur et al. 2024): reject an incorrect solution cut at its Monte-Carlo critical step."


class PerStepDpoParams(Strict):
    k: int = Field(8, gt=0, description="samples per training problem from pi_sft")
    negatives: int = Field(8, gt=0, description="distinct incorrect samples per problem that become pairs (paper: 8)")
    rollouts: int = Field(5, gt=0, description="K, Monte-Carlo rollouts from each step prefix (paper: 5)")
    value: Literal["best_of_k", "mean"] = Field(
        "best_of_k",
        description="Q of a prefix: 1 if any of the K rollouts succeeds (pi~ = BoK(pi_sft), the paper's) or their "
        "success rate",
    )
    pairs: Literal["solution", "step", "whole"] = Field(
        "solution",
        description="solution: (y+, y- cut after its critical step), y+ any correct sample (paper); step: y+ a "
        "rollout sharing y-'s prefix before the critical step; whole: plain DPO on whole (y+, y-), no rollouts",
    )
    rollout_temperature: float | None = Field(
        None, ge=0, description="temperature of the rollouts (default: sampling.temperature)"
    )


PARAMS = PerStepDpoParams
_MC: dict[str, Literal["hard", "soft"]] = {"best_of_k": "hard", "mean": "soft"}  # value -> mc_step_labels mode


def run(loop: Loop) -> None:
    p: PerStepDpoParams = loop.params
    base = loop.base
    loop.evaluate(0, base)
    problems = loop.task.train_problems(1, loop.cfg.seed)
    by_id = {q.id: q for q in problems}
    samples = loop.sample(1, "samples", base, problems, n=p.k, filter=f"pairs:{p.pairs}")

    # Each problem's distinct correct solutions and up to `negatives` distinct incorrect ones; Q_0 from its samples.
    positives, negatives, q0 = {}, [], {}
    for pid, rows in by_problem(samples).items():
        right = list(dict.fromkeys(r["completion"] for r in rows if r["correct"]))
        if not right:
            continue  # no y+ to pair with (and Q_0 = 0: no step is worse than the prompt)
        positives[pid] = cycle(right)
        q0[pid] = 1.0 if p.value == "best_of_k" else sum(r["correct"] for r in rows) / len(rows)
        wrong = {r["completion"]: r for r in rows if not r["correct"]}
        negatives += [(r, loop.task.steps(r["completion"])) for r in list(wrong.values())[: p.negatives]]

    if p.pairs == "whole":
        pairs = [
            pair_record(
                r["prompt"],
                next(positives[r["problem_id"]]),
                r["completion"],
                id=r["id"],
                rejected_partial=not r["finished"],
            )
            for r, _ in negatives
        ]
        cuts = []
    else:
        todo, prefills = [], []
        for r, steps in negatives:
            prefixes = step_prefixes(steps)[:-1]  # Q_L needs no rollout: the solution's own reward, 0
            todo += [by_id[r["problem_id"]]] * len(prefixes)
            prefills += prefixes
        rollouts = loop.sample(
            1, "mc_rollouts", base, todo, n=p.rollouts, temperature=p.rollout_temperature, prefills=prefills,
            filter="none (Monte-Carlo prefix values)",
        )  # fmt: skip
        pairs, cuts, at = [], [], 0
        for r, steps in negatives:
            n_prefixes = max(len(steps) - 1, 0)
            groups = [rollouts[(at + i) * p.rollouts : (at + i + 1) * p.rollouts] for i in range(n_prefixes)]
            at += n_prefixes
            values = mc_step_labels([[x["answer"] for x in g] for g in groups], r["gold"], mode=_MC[p.value])
            c = critical_step([q0[r["problem_id"]], *values, 0.0]) if steps else 0
            cuts.append((c, len(steps)))
            if p.pairs == "step" and c > 1:  # A_c < 0, so Q_{c-1} > 0: a rollout from y_{1:c-1} succeeded
                chosen = next(x["completion"] for x in groups[c - 2] if x["correct"])
            else:
                chosen = next(positives[r["problem_id"]])
            whole = c == len(steps)
            rejected = r["completion"] if whole else " ".join(steps[:c])
            partial = not (whole and r["finished"])  # cut after step c, or never finished: no EOS
            pairs.append(pair_record(r["prompt"], chosen, rejected, id=r["id"], rejected_partial=partial))

    model = loop.train(1, base, pairs, trainer="pairs")
    loop.evaluate(
        1,
        model,
        train_pairs=len(pairs),
        problems_with_pairs=len(positives),
        correct_samples=sum(r["correct"] for r in samples),
        critical_step_is_last=mean(c == n for c, n in cuts) if cuts else None,
        critical_step_position=mean(c / n for c, n in cuts if n) if cuts else None,
    )
