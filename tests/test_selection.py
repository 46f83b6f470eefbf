import itertools
import random
from math import comb

import pytest

from selfalign.evaluation.metrics import majority
from selfalign.evaluation.selection import Candidates, auc, best_of_k, selection_curve, vote_at_k


def brute_force_best_of_k(scores: list[float], correct: list[bool], k: int) -> float:
    """Mean over all k-subsets of the correctness of the top-scored member, ties split evenly among the tied."""
    values = []
    for subset in itertools.combinations(range(len(scores)), k):
        top = max(scores[i] for i in subset)
        tied = [correct[i] for i in subset if scores[i] == top]
        values.append(sum(tied) / len(tied))
    return sum(values) / len(values)


def brute_force_vote_at_k(answers: list[str | None], gold: str, k: int) -> float:
    """Mean over all k-subsets and all their orderings of `majority(...) == gold`.

    majority() breaks ties by first occurrence, and in a uniformly random ordering the first occurrence among answers
    tied at count c is uniform over them, so averaging over orderings is exactly uniform random tie-breaking.
    """
    values = []
    for subset in itertools.combinations(answers, k):
        orders = list(itertools.permutations(subset))
        values.append(sum(majority(o) == gold for o in orders) / len(orders))
    return sum(values) / len(values)


def brute_force_weighted_vote_at_k(answers: list[str | None], weights: list[float], gold: str, k: int) -> float:
    values = []
    for subset in itertools.combinations(range(len(answers)), k):
        totals: dict[str, float] = {}
        for i in subset:
            if answers[i] is not None:
                totals[answers[i]] = totals.get(answers[i], 0.0) + weights[i]
        if not totals:
            values.append(0.0)
            continue
        winners = [a for a, t in totals.items() if t == max(totals.values())]
        values.append(winners.count(gold) / len(winners))
    return sum(values) / len(values)


@pytest.mark.parametrize("seed", range(10))
def test_auc_is_the_share_of_correct_incorrect_pairs_ranked_right(seed):
    rng = random.Random(seed)
    scores = [rng.choice([0.1, 0.5, 0.9, rng.random()]) for _ in range(12)]  # ties count half
    correct = [i % 3 == 0 for i in range(12)]
    pairs = [(p, q) for p, cp in zip(scores, correct) if cp for q, cq in zip(scores, correct) if not cq]
    expected = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in pairs) / len(pairs)
    assert abs(auc(scores, correct) - expected) < 1e-12


def test_auc_edges():
    assert auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auc([0.1, 0.8, 0.9], [True, True, False]) == 0.0
    assert auc([0.5, 0.5], [True, False]) == 0.5
    assert auc([0.5, 0.7], [True, True]) is None


@pytest.mark.parametrize("seed", range(30))
def test_best_of_k_matches_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 8)
    scores = [rng.choice([0.1, 0.5, 0.9, rng.random()]) for _ in range(n)]  # few distinct values: many ties
    correct = [rng.random() < 0.5 for _ in range(n)]
    for k in range(1, n + 1):
        expected = brute_force_best_of_k(scores, correct, k)
        assert abs(best_of_k(scores, correct, k) - expected) < 1e-12
        order = list(range(n))
        rng.shuffle(order)  # ties must not be broken by input order
        assert abs(best_of_k([scores[i] for i in order], [correct[i] for i in order], k) - expected) < 1e-12


def test_best_of_k_edges():
    scores = [0.2, 0.9, 0.4, 0.7, 0.1]
    correct = [True, False, True, True, False]
    assert best_of_k(scores, correct, 5) == 0.0  # top-scored sample (0.9) is wrong
    assert best_of_k(scores, [not c for c in correct], 5) == 1.0
    assert best_of_k(scores, correct, 1) == pytest.approx(3 / 5)
    # V-STaR sum by hand for k=2: sorted correctness is [F, T, T, T, F], weights C(4-i, 1) / C(5, 2).
    assert best_of_k(scores, correct, 2) == pytest.approx((0 * 4 + 1 * 3 + 1 * 2 + 1 * 1) / comb(5, 2))
    assert best_of_k([0.5, 0.5], [True, False], 2) == 0.5  # an all-tied pair is a coin flip


@pytest.mark.parametrize("seed", range(20))
def test_vote_at_k_matches_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 7)
    answers = [rng.choice(["1", "2", "3", None]) for _ in range(n)]
    gold = rng.choice(["1", "2"])
    for k in range(1, n + 1):
        assert vote_at_k(answers, gold, k) == pytest.approx(brute_force_vote_at_k(answers, gold, k), abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_weighted_vote_at_k_matches_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 8)
    answers = [rng.choice(["1", "2", "3", None]) for _ in range(n)]
    weights = [rng.choice([0.0, 0.5, 1.0, 2.0]) for _ in range(n)]  # dyadic, so ties are exact and frequent
    for k in range(1, n + 1):
        expected = brute_force_weighted_vote_at_k(answers, weights, "1", k)
        assert vote_at_k(answers, "1", k, weights=weights) == pytest.approx(expected, abs=1e-12)


def test_vote_at_k_monte_carlo_is_deterministic_and_close():
    rng = random.Random(7)
    answers = [rng.choice(["1", "1", "2", "3", None]) for _ in range(12)]
    assert comb(12, 5) > 500
    exact = vote_at_k(answers, "1", 5, trials=comb(12, 5))
    assert 0.1 < exact < 0.9  # a case where sampling noise actually matters
    mc = vote_at_k(answers, "1", 5, trials=500, seed=3)
    assert mc == vote_at_k(answers, "1", 5, trials=500, seed=3)
    assert abs(mc - exact) < 0.05
    assert len({vote_at_k(answers, "1", 5, trials=500, seed=s) for s in range(3)}) > 1  # really sampled


def test_weighted_vote_and_none_answers():
    answers = ["7", "7", "7", "3"]
    assert vote_at_k(answers, "3", 4) == 0.0
    assert vote_at_k(answers, "3", 4, weights=[0.1, 0.1, 0.1, 0.9]) == 1.0  # minority wins on weight
    assert vote_at_k(answers, "7", 4, weights=[0.1, 0.1, 0.1, 0.9]) == 0.0
    assert vote_at_k([None, None, None, "5"], "5", 4) == 1.0
    assert vote_at_k([None, None, None, "5"], "5", 4, weights=[1.0, 1.0, 1.0, 0.1]) == 1.0
    assert vote_at_k([None, None], "5", 2) == 0.0
    assert vote_at_k(["1", "2"], "1", 2) == 0.5  # tie counts as its expected value
    assert vote_at_k(["1", "2", "2"], "1", 1) == pytest.approx(1 / 3)


def test_selection_curve_averages_problems():
    problems = [
        Candidates(
            answers=["1", "2", "2", "1"], correct=[True, False, False, True], gold="1", scores=[0.9, 0.2, 0.3, 0.1]
        ),
        Candidates(answers=["4", "5", "5"], correct=[False, True, True], gold="5", scores=[0.8, 0.1, 0.3]),
    ]
    ks = [3, 1, 2]
    curve = selection_curve(problems, ks, method="best_of")
    assert list(curve) == ks
    for k in ks:
        assert curve[k] == pytest.approx(sum(best_of_k(p.scores, p.correct, k) for p in problems) / 2)
    assert curve[1] == pytest.approx((2 / 4 + 2 / 3) / 2)
    majority_curve = selection_curve(problems, ks, method="majority")
    weighted_curve = selection_curve(problems, ks, method="weighted")
    for k in ks:
        assert majority_curve[k] == pytest.approx(sum(vote_at_k(p.answers, p.gold, k) for p in problems) / 2)
        want = sum(vote_at_k(p.answers, p.gold, k, weights=p.scores) for p in problems) / 2
        assert weighted_curve[k] == pytest.approx(want)
    assert weighted_curve[3] == pytest.approx((3 / 4 + 0.0) / 2)  # problem 2: 0.8 on "4" outvotes 0.1 + 0.3 on "5"


def test_value_errors():
    with pytest.raises(ValueError):
        best_of_k([0.1, 0.2], [True, False], 0)
    with pytest.raises(ValueError):
        best_of_k([0.1, 0.2], [True, False], 3)
    with pytest.raises(ValueError):
        best_of_k([0.1, 0.2], [True], 1)
    with pytest.raises(ValueError):
        best_of_k([0.1, float("nan")], [True, False], 1)
    with pytest.raises(ValueError):
        vote_at_k(["1", "2"], "1", 0)
    with pytest.raises(ValueError):
        vote_at_k(["1", "2"], "1", 3)
    with pytest.raises(ValueError):
        vote_at_k(["1", "2"], "1", 1, weights=[1.0])
    with pytest.raises(ValueError):
        vote_at_k(["1", "2"], "1", 1, weights=[1.0, -0.5])
    with pytest.raises(ValueError):
        vote_at_k(["1", "2"], "1", 1, trials=0)
    with pytest.raises(ValueError):
        Candidates(answers=["1", "2"], correct=[True], gold="1")
    unscored = [Candidates(answers=["1", "2"], correct=[True, False], gold="1")]
    with pytest.raises(ValueError):
        selection_curve(unscored, [1], method="best_of")
    with pytest.raises(ValueError):
        selection_curve(unscored, [1], method="weighted")
    with pytest.raises(ValueError):
        selection_curve(unscored, [1], method="plurality")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        selection_curve([], [1])
    assert selection_curve(unscored, [1, 2]) == {1: 0.5, 2: 0.5}
