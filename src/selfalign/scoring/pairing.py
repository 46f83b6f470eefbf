"""From scored samples to preference pairs: each prompt's highest- and lowest-scored distinct samples (SPA's
min_max), with the judge's confidence sigma(r_w - r_l)."""

from __future__ import annotations

import torch

from selfalign.evaluation.metrics import by_problem
from selfalign.records import pair_record


def judge_pair(reward_a: torch.Tensor, reward_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_wins [B] bool, confidence p = sigma(r_w - r_l) [B], always >= 0.5)."""
    a_wins = reward_a >= reward_b
    return a_wins, torch.sigmoid((reward_a - reward_b).abs())


def min_max_pairs(samples: list[dict], scores: list[float], judge: str, stage: str) -> list[dict]:
    """One pair per prompt: the best- against the worst-scored sample (ties keep sample order), skipped when the
    two completions are the same. Where the task has a gold reward the pair records whether gold agrees (None on
    a gold tie); that scores the judge, never the training."""
    score_of = {id(r): s for r, s in zip(samples, scores)}
    ends = []
    for group in by_problem(samples).values():
        ranked = sorted(group, key=lambda r: -score_of[id(r)])  # stable: ties keep sample order
        if ranked[0]["completion"] != ranked[-1]["completion"]:
            ends.append((ranked[0], ranked[-1]))
    _, confidence = judge_pair(
        torch.tensor([score_of[id(w)] for w, _ in ends]), torch.tensor([score_of[id(lo)] for _, lo in ends])
    )
    return [
        pair_record(
            w["prompt"],
            w["completion"],
            lose["completion"],
            id=w["problem_id"],
            confidence=p,
            gold_agrees=None if w["reward"] == lose["reward"] else w["reward"] > lose["reward"],
            provenance={**w["provenance"], "stage": stage, "judge": judge},
        )
        for (w, lose), p in zip(ends, confidence.tolist())
    ]
