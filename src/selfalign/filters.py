"""Which self-generated samples a recipe keeps: the first correct ones per problem (STaR, ReST-EM), and
reasoning-path dedup from RFT (Yuan et al. 2023, `collect_rejection_sampling.py`).

Two correct paths are the same path when their step sequences match (whitespace ignored). Among
paths sharing a key, RFT keeps the one farthest, by summed Levenshtein distance, from the paths
already kept, so the kept set is as diverse as possible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from rapidfuzz.distance import Levenshtein

DedupMode = Literal["none", "steps", "farthest"]


def path_key(steps: list[str]) -> str:
    return "|".join(steps).replace(" ", "")


def dedup_paths(completions: list[str], steps_of: Callable[[str], list[str]], mode: DedupMode) -> list[int]:
    """Indices of the completions (all for one problem) that survive dedup, in first-seen key order."""
    if mode == "none":
        return list(range(len(completions)))
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(completions):
        groups.setdefault(path_key(steps_of(c)), []).append(i)
    if mode == "steps":
        return [members[0] for members in groups.values()]
    kept: list[int] = []
    for members in groups.values():
        best = max(members, key=lambda i: sum(Levenshtein.distance(completions[i], completions[j]) for j in kept))
        kept.append(best)
    return kept


def first_correct(samples: list[dict], limit: int) -> list[dict]:
    """Up to `limit` correct samples per problem, in sample order."""
    counts: dict[str, int] = {}
    out = []
    for r in samples:
        if r["correct"] and counts.get(r["problem_id"], 0) < limit:
            counts[r["problem_id"]] = counts.get(r["problem_id"], 0) + 1
            out.append(r)
    return out
