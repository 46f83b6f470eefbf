"""Best-of-N read-outs of verifier-scored samples: solve rate against N for every selection method, and a PRM's
step-level quality against the task checker's step labels.

A scored row is a graded sample (`problem_id`, `answer`, `gold`, `correct`, `first_error`, `n_steps`) with
`scores: {verifier: score}`, where an outcome verifier's score is a number and a process verifier's is a list of
per-step scores.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from functools import partial

from selfalign.evaluation.metrics import by_problem, mean_pass_at_k
from selfalign.evaluation.selection import Candidates, Method, auc, selection_curve
from selfalign.stepwise import predicted_first_error, solution_score, step_labels_from_check

AGGREGATES = ("product", "min", "last")


def curve_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to and including n."""
    return sorted({min(2**i, n) for i in range(n.bit_length() + 1)})


def is_process(rows: list[dict], name: str) -> bool:
    return bool(rows) and isinstance(rows[0]["scores"][name], list)


def selection_metrics(rows: list[dict], test: str, n: int, probabilities: Collection[str] = ()) -> dict:
    """Solve rate against N for the pass@k oracle, majority vote, best-of-N by every verifier (a PRM by each
    aggregate) and the votes weighted by a PRM's product or by the outcome verifiers named in `probabilities`
    (those whose scores are probabilities); each verifier's AUC at telling correct samples from incorrect ones,
    pooled over all samples (a PRM by its product); and each PRM's step-level quality."""
    groups = by_problem(rows)
    ks = curve_ks(n)

    def curve(method: Method, score: Callable[[dict], float] | None = None) -> dict[int, float]:
        cands = [
            Candidates(
                [r["answer"] for r in g],
                [r["correct"] for r in g],
                g[0]["gold"],
                None if score is None else [score(r) for r in g],
            )
            for g in groups.values()
        ]
        return selection_curve(cands, ks, method)

    curves = {
        "pass@k (oracle)": {k: mean_pass_at_k(groups.values(), k) for k in ks},
        "majority vote": curve("majority"),
    }
    verifiers = list(rows[0]["scores"]) if rows else []
    correct = [r["correct"] for r in rows]
    aucs = {}
    for name in verifiers:
        if is_process(rows, name):
            for how in AGGREGATES:
                curves[f"{name} ({how})"] = curve("best_of", partial(prm_score, name=name, how=how))
            score = partial(prm_score, name=name, how="product")
            curves[f"{name} weighted vote"] = curve("weighted", score)
        else:
            score = partial(outcome_score, name=name)
            curves[name] = curve("best_of", score)
            if name in probabilities:
                curves[f"{name} weighted vote"] = curve("weighted", score)
        aucs[name] = auc([score(r) for r in rows], correct)
    quality = {name: prm_quality(rows, name) for name in verifiers if is_process(rows, name)}
    return {"selection_set": test, "best_of_n": curves, "verifier_auc": aucs, "prm_quality": quality}


def outcome_score(row: dict, name: str) -> float:
    return row["scores"][name]


def prm_score(row: dict, name: str, how: str) -> float:
    return solution_score(row["scores"][name], how)


def prm_quality(rows: list[dict], name: str) -> dict:
    """`step_quality` of a PRM's scores against the checker's step labels (up to the first error)."""
    return step_quality(
        (r["scores"][name], step_labels_from_check(r["n_steps"], r["first_error"], "binary")) for r in rows
    )


def step_quality(solutions: Iterable[tuple[Sequence[float], Sequence[bool]]]) -> dict:
    """Step-label accuracy (a step scored >= 0.5 is predicted good), first-error accuracy (the first step scored
    below 0.5 is the first step labelled bad, or neither exists) and step AUC (how well step scores rank good steps
    above bad ones, whatever the threshold) over (step scores, good/bad step labels) pairs."""
    hits = total = first = solved = 0
    step_scores: list[float] = []
    step_good: list[bool] = []
    for scores, labels in solutions:
        step_scores += scores[: len(labels)]
        step_good += [bool(good) for good in labels[: len(scores)]]
        gold_first = next((i for i, good in enumerate(labels) if not good), None)
        hits += sum((s >= 0.5) == bool(good) for s, good in zip(scores, labels))
        total += len(labels)
        first += predicted_first_error(scores) == gold_first
        solved += 1
    return {
        "step_accuracy": hits / max(1, total),
        "first_error_accuracy": first / max(1, solved),
        "step_auc": auc(step_scores, step_good),
    }
