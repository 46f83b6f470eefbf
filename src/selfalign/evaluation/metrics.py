"""Metrics over graded samples, as pure functions: accuracy by difficulty, unbiased pass@k, maj@k, gold reward and
win rate, and a judge's agreement with gold."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from math import comb
from typing import Any


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


def policy_metrics(
    rows: list[dict], sets: Mapping[str, Sequence[Any]], k: int, graded: bool, baseline: list[dict] | None
) -> dict[str, Any]:
    """A round's metrics from its graded eval samples (`k` per problem of each eval set, whose items have `.id`):
    accuracy by difficulty; pass@k per set when k > 1, and maj@k when the problems have reference answers; mean
    tokens; and for a task with a graded gold reward, the mean gold reward and the win rate against `baseline`
    (the starting model's eval samples; None for the starting model itself)."""
    metrics: dict[str, Any] = {"accuracy": accuracy_by_difficulty(rows)}
    if k > 1:
        grouped = by_problem(rows)
        for label, problems in sets.items():
            groups = [grouped[p.id] for p in problems]
            metrics.setdefault(f"pass@{k}", {})[label] = mean_pass_at_k(groups, k)
            if any(r["gold"] for r in rows):  # a majority vote needs reference answers to compare with
                metrics.setdefault(f"maj@{k}", {})[label] = sum(
                    maj_at_k([r["answer"] for r in g], g[0]["gold"], k) for g in groups
                ) / len(groups)
    metrics["mean_tokens"] = sum(r["n_tokens"] for r in rows) / max(1, len(rows))
    if graded:
        metrics["gold_reward"] = sum(r["reward"] for r in rows) / max(1, len(rows))
        if baseline is not None:
            metrics["win_rate"] = win_rate(rows, baseline)
    return metrics


def share(xs: Iterable[bool]) -> float | None:
    """The share of true values; None when there are none."""
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def graded_summary(rows: Sequence[dict]) -> dict[str, float | None]:
    """One response per problem, graded: the share correct, the mean gold reward and the mean length in tokens."""
    return {
        "correct": share(r["correct"] for r in rows),
        "gold reward": sum(r["reward"] for r in rows) / len(rows),
        "mean tokens": sum(r["n_tokens"] for r in rows) / len(rows),
    }


def win_rate(rows: list[dict], baseline: list[dict]) -> float:
    """Share of eval samples whose gold reward beats the starting model's on the same prompt and
    sample index (ties count half): the gold win rate against round 0 (the SFT model)."""
    base = {r["id"]: r["reward"] for r in baseline}
    wins = [0.5 if r["reward"] == base[r["id"]] else float(r["reward"] > base[r["id"]]) for r in rows]
    return sum(wins) / max(1, len(wins))


def annotation_accuracy(pairs: list[dict]) -> float | None:
    """Share of judged pairs whose label gold agrees with (gold ties left out); None when none can be scored."""
    judged = [p["gold_agrees"] for p in pairs if p.get("gold_agrees") is not None]
    return sum(judged) / len(judged) if judged else None


def performance_gap_recovered(weak: float, weak_to_strong: float, ceiling: float) -> float | None:
    """PGR = (weak-to-strong - weak) / (ceiling - weak) (Burns et al. 2023): 0 = the student only matches its
    supervisor, 1 = it matches a student trained on ground truth. None when the ceiling is not above the weak
    supervisor, as the official notebook drops those pairs."""
    return (weak_to_strong - weak) / (ceiling - weak) if ceiling > weak else None


def ranking_accuracy(groups: Iterable[tuple[Sequence[float], Sequence[float]]]) -> float | None:
    """How often a scorer orders two candidates of one group as the ground truth does: over every pair of candidates
    whose true values differ, the share where the scores agree (a tie counts half). Each group is (truth, scores)."""
    right, total = 0.0, 0
    for truth, scores in groups:
        for i in range(len(truth)):
            for j in range(i + 1, len(truth)):
                if truth[i] != truth[j]:
                    total += 1
                    agree = (truth[i] - truth[j]) * (scores[i] - scores[j])
                    right += 1.0 if agree > 0 else 0.5 if scores[i] == scores[j] else 0.0
    return right / total if total else None


def judge_metrics(judgements: Sequence[dict], gold: Sequence[float | None], bins: int = 10) -> dict[str, float | None]:
    """An AI labeller against gold on pairs (a, b). `judgements` carry `p` = P(a better), swap-averaged, `orders`
    = P(a better) with a shown first and with b shown first (None when not judged), and `valid`; gold is 1.0 when
    a is better, 0.0 when b is, None for a tie (left out, as are invalid judgements but for the `invalid` share).

    accuracy: the averaged label agrees with gold (p = 0.5 counts half); accuracy_a_first / accuracy_b_first: one
    order's label alone, position bias included; flip_rate: share of pairs whose winner changes when the order is
    swapped (a position-consistent judge: 0); first_position: share of single-order verdicts picking the response
    shown first (unbiased: 0.5); ece: expected calibration error of the averaged label (|accuracy - confidence|
    over `bins` equal confidence bins on [0.5, 1], weighted by their counts)."""
    rows = [(j, g) for j, g in zip(judgements, gold, strict=True) if g is not None and j["valid"]]
    out: dict[str, float | None] = {
        "pairs": len(rows),
        "invalid": sum(not j["valid"] for j in judgements) / len(judgements) if judgements else None,
    }
    if not rows:
        return out

    def agrees(p: float, g: float) -> float:
        return 0.5 if p == 0.5 else float((p > 0.5) == (g > 0.5))

    n = len(rows)
    out["accuracy"] = sum(agrees(j["p"], g) for j, g in rows) / n
    out["accuracy_a_first"] = sum(agrees(j["orders"][0], g) for j, g in rows) / n
    if all(j["orders"][1] is not None for j, _ in rows):  # both orders judged
        out["accuracy_b_first"] = sum(agrees(j["orders"][1], g) for j, g in rows) / n
        out["flip_rate"] = sum((j["orders"][0] > 0.5) != (j["orders"][1] > 0.5) for j, _ in rows) / n
        out["first_position"] = sum((j["orders"][0] > 0.5) + (j["orders"][1] < 0.5) for j, _ in rows) / (2 * n)
    binned: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for j, g in rows:
        confidence = max(j["p"], 1 - j["p"])
        binned[min(int((confidence - 0.5) * 2 * bins), bins - 1)].append((confidence, agrees(j["p"], g)))
    out["ece"] = sum(abs(sum(a for _, a in b) - sum(c for c, _ in b)) for b in binned) / n
    return out
