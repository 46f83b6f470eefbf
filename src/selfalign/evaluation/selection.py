"""Test-time selection among N sampled solutions: best-of-k by a verifier score, (weighted) majority vote, and their
accuracy curves over k.

Every estimator is the expected correctness of selecting from a uniformly random k-subset of the N samples, so one set
of N samples gives a whole curve over k <= N without re-sampling. Ties are always resolved by their expectation under
uniform random tie-breaking, which keeps every result independent of the order the samples are given in.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from typing import Literal

Method = Literal["best_of", "majority", "weighted"]
METHODS: tuple[str, ...] = ("best_of", "majority", "weighted")


@dataclass(frozen=True)
class Candidates:
    """The N sampled solutions to one problem: final answers, graded correctness, the gold answer and optional scores
    (verifier scores for best-of; non-negative vote weights, e.g. probabilities, for the weighted vote)."""

    answers: Sequence[str | None]
    correct: Sequence[bool]
    gold: str
    scores: Sequence[float] | None = None

    def __post_init__(self) -> None:
        n = len(self.answers)
        if len(self.correct) != n or (self.scores is not None and len(self.scores) != n):
            raise ValueError("answers, correct and scores must have one entry per sample")


def auc(scores: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Area under the ROC curve of `scores` separating correct from incorrect samples (the Mann-Whitney statistic,
    ties count half): the chance that a random correct sample outscores a random incorrect one. 0.5 is a verifier
    that knows nothing; None when one class is empty."""
    pos = [s for s, c in zip(scores, correct) if c]
    neg = sorted(s for s, c in zip(scores, correct) if not c)
    if not pos or not neg:
        return None
    wins = sum(bisect.bisect_left(neg, s) + bisect.bisect_right(neg, s) for s in pos) / 2
    return wins / (len(pos) * len(neg))


def best_of_k(scores: Sequence[float], correct: Sequence[bool], k: int) -> float:
    """Unbiased best-of-k from N >= k scored samples (V-STaR, Hosseini et al. 2024).

    With the samples sorted by score descending and alpha_i the correctness of the i-th, this is
    (1/C(N,k)) * sum_{i=0}^{N-k} C(N-i-1, k-1) * alpha_i: the expected correctness of the top-scored sample of a
    uniformly random k-subset. Tied scores are broken uniformly at random in expectation, i.e. each member of a tie
    group counts with the group's mean correctness, so the result never depends on input order.
    """
    n = len(scores)
    if len(correct) != n:
        raise ValueError(f"scores and correct differ in length: {n} != {len(correct)}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= N, got k={k} N={n}")
    if any(math.isnan(s) for s in scores):
        raise ValueError("scores must not be NaN")
    ranked = sorted(zip(scores, correct), key=lambda sc: -sc[0])
    total = comb(n, k)
    terms = []
    above = 0  # samples scored strictly higher than the current tie group
    for _, group in itertools.groupby(ranked, key=lambda sc: sc[0]):
        hits = [bool(c) for _, c in group]
        size = len(hits)
        # Summing the V-STaR weights over the group's positions telescopes (hockey stick) to the probability that the
        # subset's top score falls in this group: it avoids all `above` samples but not the whole group.
        p_top = (comb(n - above, k) - comb(n - above - size, k)) / total
        terms.append(p_top * sum(hits) / size)
        above += size
    return math.fsum(terms)


def vote_at_k(
    answers: Sequence[str | None],
    gold: str,
    k: int,
    weights: Sequence[float] | None = None,
    trials: int = 200,
    seed: int = 0,
) -> float:
    """Expected correctness of the (weighted) majority answer of a uniformly random k-subset of the N samples.

    weights=None is plain majority voting; otherwise the winner is argmax_a sum_i w_i [a_i = a] (weighted
    self-consistency, Math-Shepherd). Weights must be non-negative (e.g. probabilities). None answers never win; a
    subset of only None answers scores 0. A tie between answers counts as the fraction of tied answers equal to gold,
    the expectation under random tie-breaking. All C(N,k) subsets are enumerated when there are at most `trials` of
    them, else `trials` random subsets are drawn from random.Random(seed), so the result is deterministic.
    """
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= N, got k={k} N={n}")
    if trials < 1:
        raise ValueError(f"trials must be positive, got {trials}")
    if weights is None:
        weights = [1.0] * n
    elif len(weights) != n:
        raise ValueError(f"answers and weights differ in length: {n} != {len(weights)}")
    elif not all(w >= 0 for w in weights):  # also rejects NaN
        raise ValueError("vote weights must be non-negative")
    if comb(n, k) <= trials:
        subsets = itertools.combinations(range(n), k)
        count = comb(n, k)
    else:
        rng = random.Random(seed)
        subsets = (rng.sample(range(n), k) for _ in range(trials))
        count = trials
    return math.fsum(_vote_correct([answers[i] for i in s], [weights[i] for i in s], gold) for s in subsets) / count


def _vote_correct(answers: Sequence[str | None], weights: Sequence[float], gold: str) -> float:
    """Chance that the weighted vote over these samples equals gold, with ties broken uniformly at random."""
    tally: dict[str, list[float]] = defaultdict(list)
    for a, w in zip(answers, weights):
        if a is not None:
            tally[a].append(w)
    if not tally:
        return 0.0
    # fsum is correctly rounded, so exact ties stay ties whatever order the votes were added in.
    totals = {a: math.fsum(ws) for a, ws in tally.items()}
    best = max(totals.values())
    winners = [a for a, t in totals.items() if t == best]
    return winners.count(gold) / len(winners)


def selection_curve(
    problems: Sequence[Candidates], ks: Sequence[int], method: Method = "majority", trials: int = 200, seed: int = 0
) -> dict[int, float]:
    """Mean selection accuracy over problems for each k in ks.

    method: "best_of" ranks by `scores` (best_of_k), "majority" is the unweighted vote, "weighted" votes with `scores`
    as non-negative weights. Problem i's vote subsets are drawn with seed + i so problems get independent draws.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not problems:
        raise ValueError("need at least one problem")
    if method != "majority" and any(p.scores is None for p in problems):
        raise ValueError(f"method {method!r} needs scores on every problem")

    def one(i: int, p: Candidates, k: int) -> float:
        if method == "best_of":
            return best_of_k(p.scores, p.correct, k)  # type: ignore[arg-type]  # checked above
        weights = p.scores if method == "weighted" else None
        return vote_at_k(p.answers, p.gold, k, weights=weights, trials=trials, seed=seed + i)

    return {k: math.fsum(one(i, p, k) for i, p in enumerate(problems)) / len(problems) for k in ks}
