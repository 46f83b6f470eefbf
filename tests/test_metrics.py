import itertools
import random
from math import comb

import pytest

from selfalign.evaluation.metrics import accuracy_by_difficulty, maj_at_k, majority, pass_at_k


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> float:
    """Fraction of all k-subsets of the samples that contain at least one correct sample."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("seed", range(20))
def test_pass_at_k_matches_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 10)
    outcomes = [rng.random() < 0.3 for _ in range(n)]
    for k in range(1, n + 1):
        assert pass_at_k(n, sum(outcomes), k) == pytest.approx(brute_force_pass_at_k(outcomes, k))


def test_pass_at_k_edges():
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(10, 2, 5) == pytest.approx(1 - comb(8, 5) / comb(10, 5))
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_majority_and_maj_at_k():
    assert majority(["1", "2", "2", None, "1", "2"]) == "2"
    assert majority(["1", "2"]) == "1"  # ties go to the first seen
    assert majority([None, None]) is None
    assert maj_at_k(["5", "3", "3"], "3", 3) == 1.0
    assert maj_at_k(["5", "3", "3"], "3", 1) == 0.0


def test_accuracy_by_difficulty_sorts_numerically():
    rows = [{"difficulty": d, "correct": c} for d, c in [(10, True), (2, False), (2, True), (10, True)]]
    assert accuracy_by_difficulty(rows) == {"2": 0.5, "10": 1.0}
    assert list(accuracy_by_difficulty(rows)) == ["2", "10"]


def test_ranking_accuracy_counts_pairs_with_different_truth_and_half_for_ties():
    from selfalign.evaluation.metrics import ranking_accuracy

    assert ranking_accuracy([([1, 0, 0], [0.9, 0.1, 0.5])]) == 1.0  # the 0-0 pair does not count
    assert ranking_accuracy([([1, 0], [0.1, 0.9]), ([2, 1], [0.3, 0.3])]) == 0.25
    assert ranking_accuracy([([1, 1], [0.0, 1.0])]) is None


def test_share_and_graded_summary_by_hand():
    from selfalign.evaluation.metrics import graded_summary, share

    assert share([True, False, True, True]) == 0.75 and share([]) is None
    rows = [{"correct": True, "reward": 1.0, "n_tokens": 4}, {"correct": False, "reward": 0.5, "n_tokens": 8}]
    assert graded_summary(rows) == {"correct": 0.5, "gold reward": 0.75, "mean tokens": 6.0}
