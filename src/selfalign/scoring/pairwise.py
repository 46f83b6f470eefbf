"""The model as a pairwise LLM judge (RLAIF, Lee et al. 2023; Self-Rewarding LMs, Yuan et al. 2024).

The judge reads a pairwise prompt holding x, a first and a second response, and its next-token probabilities of
the two verdict labels, renormalised over just those two, give P(first is better). Every pair is judged in both
orders and the two are averaged, which cancels the judge's position bias (RLAIF §2.1).
"""

from __future__ import annotations

import math
from functools import partial
from itertools import combinations

import torch

from selfalign.batching import Batch, batched_forward, model_inputs, pad_right
from selfalign.models import Policy
from selfalign.records import Problem


def judge_records(pairs: list[dict], template: str, labels: tuple[str, str]) -> list[dict]:
    """SFT records teaching the judge from labelled pairs, each in both orders: the verdict names the chosen one."""
    records = []
    for p in pairs:
        for first, second, verdict in ((p["chosen"], p["rejected"], 0), (p["rejected"], p["chosen"], 1)):
            prompt = template.format(prompt=p["prompt"], first=first, second=second)
            records.append({"prompt": prompt, "completion": labels[verdict]})
    return records


class PairwiseJudge:
    """Scores k responses to a prompt by round-robin pairwise judgments: a response's score is half its mean
    log-odds of beating each other response, both orders averaged. For k = 2 that makes sigma(r_w - r_l) the
    debiased P(y_w better than y_l), so it slots into the same judge stage as a reward model."""

    def __init__(self, policy: Policy, template: str, labels: tuple[str, str], batch_size: int = 256):
        self.policy, self.template, self.batch_size = policy, template, batch_size
        ids = [policy.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
        if any(len(i) != 1 for i in ids) or ids[0] == ids[1]:
            raise ValueError(f"the verdict labels {labels} must be two distinct single tokens, got ids {ids}")
        self.label_ids = [i[0] for i in ids]
        self.name = f"pairwise:{policy.source}"

    def first_wins(self, prompts: list[str], firsts: list[str], seconds: list[str]) -> list[float]:
        """P(first better) in the order given, from the verdict labels' renormalised next-token probabilities."""
        texts = [self.template.format(prompt=p, first=a, second=b) for p, a, b in zip(prompts, firsts, seconds)]
        rows = [{"input_ids": ids, "labels": ids} for ids in map(self.policy.encode_prompt, texts)]
        collate = partial(pad_right, pad_id=self.policy.tokenizer.pad_token_id)
        return batched_forward(self.policy.model, rows, collate, self._verdict, self.batch_size)

    def _verdict(self, model: torch.nn.Module, batch: Batch) -> list[float]:
        logits = model(**model_inputs(batch)).logits
        last = batch["attention_mask"].sum(-1) - 1
        verdict = logits[torch.arange(len(last), device=logits.device), last][:, self.label_ids].float()
        return verdict.softmax(-1)[:, 0].tolist()

    def preferences(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        """P(a better than b), averaged over both presentation orders."""
        forward = self.first_wins(prompts, a, b)
        backward = self.first_wins(prompts, b, a)
        return [(f + 1 - r) / 2 for f, r in zip(forward, backward)]

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(problems):
            groups.setdefault(p.id, []).append(i)
        matches = [(i, j) for idx in groups.values() for i, j in combinations(idx, 2)]
        prefs = self.preferences(
            [problems[i].prompt for i, _ in matches],
            [completions[i] for i, _ in matches],
            [completions[j] for _, j in matches],
        )
        total = [0.0] * len(completions)
        for (i, j), p in zip(matches, prefs):
            odds = _log_odds(p)
            total[i] += odds
            total[j] -= odds
        return [total[i] / (2 * max(1, len(groups[p.id]) - 1)) for i, p in enumerate(problems)]


def _log_odds(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))
