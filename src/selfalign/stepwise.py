"""Stepwise data for process reward models (PRMs): TRL's `prompt`/`completions`/`labels` format.

A record holds a prompt, the solution's steps (`completions`, one string per step) and one label per
step. Three label kinds are supported:
- binary:  True/False (or 1/0), as in TRL's stepwise datasets and Math-Shepherd with hard labels;
- ternary: -1/0/1 (bad/neutral/good), as in PRM800K;
- soft:    a number in [0, 1], e.g. Math-Shepherd's fraction of successful rollouts.

Labels come from a checker (`step_labels_from_check`, PRM800K-style) or from Monte Carlo rollouts
(`mc_step_labels`, Math-Shepherd-style); `aggregate` / `predicted_first_error` turn a PRM's per-step scores
into a solution score and a located first error; `critical_step` finds the step per-step DPO rejects. Reading
and validating a stepwise file is `records.load_stepwise`; tokenizing one for a PRM is `batching.encode_stepwise`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from selfalign.records import LabelKind, check_label_kind, stepwise_record

# the value of a correct / the first incorrect step, per label kind
POSITIVE = {"binary": True, "ternary": 1, "soft": 1.0}
NEGATIVE = {"binary": False, "ternary": -1, "soft": 0.0}
CLASSES = {"binary": 2, "ternary": 3}  # token-classification head sizes; soft labels have no classes


def step_labels_from_check(n_steps: int, first_error: int | None, label_kind: LabelKind) -> list:
    """Ground-truth step labels from a checker result, PRM800K-style.

    Steps before `first_error` are positive and the first wrong step is negative; steps after it are
    dropped, so the list has `first_error + 1` labels (all `n_steps` when there is no error). PRM800K
    supervises only up to the first incorrect step: once a step is wrong, whether later steps are
    "correct" is ill-defined (they build on a wrong state), and a PRM only needs to find the first error.
    `first_error == n_steps` (what `ArithmeticTask.check` reports when steps are missing at the end)
    flags no step that exists, so every given step is positive.
    """
    check_label_kind(label_kind)
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    if first_error is not None and not 0 <= first_error <= n_steps:
        raise ValueError(f"first_error must lie in [0, {n_steps}], got {first_error}")
    if first_error is None or first_error == n_steps:
        return [POSITIVE[label_kind]] * n_steps
    return [POSITIVE[label_kind]] * first_error + [NEGATIVE[label_kind]]


def checker_step_record(sample: dict, steps: list[str]) -> dict:
    """A graded sample's stepwise record with the checker's labels, up to and including its first wrong step
    (PRM800K stops labelling there); `steps` are the sample's completion split by its task."""
    labels = step_labels_from_check(len(steps), sample["first_error"], "binary")
    return stepwise_record(sample["prompt"], steps[: len(labels)], labels, sample["id"])


def good_steps(labels: Sequence, label_kind: Literal["binary", "ternary"]) -> list[bool]:
    """Which steps count as good: all but the negative label, so PRM800K's neutral 0 is good, as the PRM's score
    1 - P(bad) treats it. (Compared by value, not membership in a tuple: 0 == False would make neutral bad.)"""
    return [label != NEGATIVE[label_kind] for label in labels]


def step_prefixes(steps: list[str], sep: str = " ") -> list[str]:
    """The completion text up to and including each step, with a trailing `sep` so a sampler can continue it."""
    return [sep.join(steps[: i + 1]) + sep for i in range(len(steps))]


def mc_step_labels(
    prefix_answers: Sequence[Sequence[str | None]], gold: str, mode: Literal["hard", "soft"]
) -> list[float]:
    """Math-Shepherd automatic step labels from rollouts, one label per step.

    `prefix_answers[i]` holds the final answers (None when none could be read) of the rollouts
    continued from the prefix ending at step i. Hard: 1.0 if any rollout reaches `gold`, else 0.0
    (a step is good if the solution can still be completed from it); soft: the fraction that do.
    The caller samples the rollouts (see `step_prefixes`), which keeps this function pure.
    """
    if mode not in ("hard", "soft"):
        raise ValueError(f"mode must be 'hard' or 'soft', got {mode!r}")
    labels = []
    for i, answers in enumerate(prefix_answers):
        if not answers:
            raise ValueError(f"no rollouts for step {i}")
        hits = sum(a == gold for a in answers)
        labels.append(float(hits > 0) if mode == "hard" else hits / len(answers))
    return labels


def aggregate(step_scores: Sequence[float], how: Literal["product", "min", "last"]) -> float:
    """A solution's score from its per-step probabilities.

    product: Lightman et al. 2023 (the probability that every step is correct); min: Math-Shepherd
    (a solution is as good as its weakest step); last: Qwen's PRM lessons (Zhang et al. 2025).
    """
    if not step_scores:
        raise ValueError("cannot aggregate an empty sequence of step scores")
    if how == "product":
        return float(math.prod(step_scores))
    if how == "min":
        return float(min(step_scores))
    if how == "last":
        return float(step_scores[-1])
    raise ValueError(f"how must be 'product', 'min' or 'last', got {how!r}")


def solution_score(step_scores: Sequence[float], how: Literal["product", "min", "last"]) -> float:
    """`aggregate`, except that a solution without steps scores 0, below every solution that has some."""
    return aggregate(step_scores, how) if step_scores else 0.0


def predicted_first_error(step_scores: Sequence[float], threshold: float = 0.5) -> int | None:
    """Index of the first step scored below `threshold` (ProcessBench-style error location), None if none."""
    return next((i for i, s in enumerate(step_scores) if s < threshold), None)


def critical_step(values: Sequence[float]) -> int:
    """The critical step ("first pit") of a solution from Monte-Carlo values of its prefixes (Setlur et al. 2024).

    `values` = [Q_0, Q_1, .., Q_L]: the value of the prompt alone, then of the prefix ending at each step i
    (Q_L, the whole solution, is its own reward). The step advantage is A_i = Q_i - Q_{i-1} (Eq. 3, deterministic
    dynamics); the critical step is the first step of lowest advantage, returned 1-based so that `steps[:c]` ends
    with it. With best-of-K values (0/1) it is the first step after which no rollout succeeds.
    """
    if len(values) < 2:
        raise ValueError(f"need the prompt's value and at least one step's, got {len(values)} values")
    advantages = [b - a for a, b in zip(values, values[1:])]
    return advantages.index(min(advantages)) + 1
