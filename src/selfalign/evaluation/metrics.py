"""Metrics over graded samples: accuracy by difficulty, unbiased pass@k, maj@k."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 - C(n-c,k)/C(n,k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def by_problem(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """Sample rows grouped by `problem_id`, in first-seen order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["problem_id"]].append(r)
    return dict(groups)


def mean_pass_at_k(groups: Iterable[list[dict]], k: int) -> float:
    """Unbiased pass@k averaged over problems, each given as its graded sample rows."""
    values = [pass_at_k(len(g), sum(r["correct"] for r in g), k) for g in groups]
    return sum(values) / len(values)


def majority(answers: Sequence[str | None]) -> str | None:
    """Most common non-empty answer; ties go to the answer seen first."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def maj_at_k(answers: Sequence[str | None], gold: str, k: int) -> float:
    """1.0 if the majority answer over the first k samples is correct."""
    return float(majority(answers[:k]) == gold)


def accuracy_by_difficulty(rows: Iterable[dict]) -> dict[str, float]:
    """Mean `correct` per `difficulty` over sample rows."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        hits[str(r["difficulty"])].append(bool(r["correct"]))
    return {d: sum(v) / len(v) for d, v in sorted(hits.items(), key=lambda kv: difficulty_order(kv[0]))}


def difficulty_order(d: str) -> tuple[int, str]:
    """Sort key: numeric difficulties in numeric order, then named ones."""
    return (int(d), "") if d.lstrip("-").isdigit() else (1 << 30, d)
