"""LLM judges: a language model's next-token probabilities of verdict labels as AI feedback.

Pairwise (RLAIF, Lee et al. 2024 §2.1; Constitutional AI, Bai et al. 2022b; Self-Rewarding LMs, Yuan et al.
2024): a prompt holding x, a first and a second response (and optionally a principle) ends where the verdict goes;
the two label tokens' probabilities, renormalised over just those two, give P(first is better). Every pair is
judged in both orders and averaged, which cancels the judge's position bias; each judgement keeps both orders.
With a chain of thought the judge first decodes a rationale (`cot_template` up to `{rationale}`), then is scored
after it; CoT labels are over-confident, so each order's probability is clamped (CAI: [0.4, 0.6]).

Pointwise (d-RLAIF, Lee et al. 2024 §2.2): the judge rates one response on a scale of single-token labels;
s = sum_i v_i P(v_i) over the renormalised label probabilities, mapped linearly to [-1, 1], is a reward.

A judge whose label tokens get almost none of the next-token mass (below `min_mass`) has given no parseable
verdict: that judgement is counted invalid and neutral (0.5, or a rating of 0), never a crash.

The probabilities come from the judge model run by torch in this process, or, with an `engine` (the `vllm` or
`openai` sampling backend's `next_token_logprobs`), from its top next-token log-probs (256 by default): a label
outside them reads as probability 0, which is off by less than the last one's probability.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from functools import partial
from itertools import combinations

import torch

from selfalign.batching import Batch, batched_forward, model_inputs, pad_right
from selfalign.models import Policy
from selfalign.records import Problem

PAIRWISE_FIELDS = {"prompt", "first", "second", "principle"}
POINTWISE_FIELDS = {"prompt", "response", "principle"}
Decoder = Callable[[list[str]], list[str]]  # prompts -> a decoded rationale each (the caller's sampler)
EngineLogprobs = Callable[[list[list[int]]], list[dict[int, float]]]  # prompts' ids -> top next-token log-probs


def judge_records(pairs: list[dict], template: str, labels: tuple[str, str]) -> list[dict]:
    """SFT records teaching the judge from labelled pairs, each in both orders: the verdict names the chosen one
    (Self-Rewarding LMs' evaluation fine-tuning, in the judge's own prompt format)."""
    records = []
    for p in pairs:
        for first, second, verdict in ((p["chosen"], p["rejected"], 0), (p["rejected"], p["chosen"], 1)):
            prompt = template.format(prompt=p["prompt"], first=first, second=second, principle="")
            records.append({"prompt": prompt, "completion": labels[verdict]})
    return records


def label_ids(policy: Policy, labels: Sequence[str]) -> list[int]:
    ids = [policy.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    if any(len(i) != 1 for i in ids) or len({i[0] for i in ids}) != len(ids):
        raise ValueError(f"the verdict labels {list(labels)} must be distinct single tokens, got ids {ids}")
    return [i[0] for i in ids]


def next_label_probs(
    policy: Policy, texts: list[str], ids: list[int], batch_size: int, engine: EngineLogprobs | None = None
) -> list[tuple[list[float], float]]:
    """For each text: the label tokens' next-token probabilities renormalised over the labels, and their total
    mass under the full softmax. Only the last positions' logits are computed (a vocabulary of 50k-260k tokens
    times every position would dominate memory)."""
    if engine is not None:
        out = []
        for top in engine([policy.encode_prompt(t) for t in texts]):
            logp = torch.tensor([top.get(i, -math.inf) for i in ids], dtype=torch.float64)
            mass = logp.exp().sum().item()
            out.append((logp.softmax(-1).tolist() if mass > 0 else [1 / len(ids)] * len(ids), mass))
        return out
    rows = [{"input_ids": x, "labels": x} for x in map(policy.encode_prompt, texts)]
    collate = partial(pad_right, pad_id=policy.tokenizer.pad_token_id)

    def read(model: torch.nn.Module, batch: Batch) -> list[tuple[list[float], float]]:
        last = batch["attention_mask"].sum(-1) - 1
        keep = torch.unique(last)
        logits = model(**model_inputs(batch), logits_to_keep=keep).logits
        at = logits[torch.arange(len(last), device=logits.device), torch.searchsorted(keep, last)].float()
        logp = at.log_softmax(-1)[:, ids]
        return list(zip(logp.softmax(-1).tolist(), logp.exp().sum(-1).tolist()))

    return batched_forward(policy.model, rows, collate, read, batch_size)


def rating_records(samples: list[dict], template: str, labels: Sequence[str], values: Sequence[float]) -> list[dict]:
    """SFT records teaching a pointwise judge from graded samples (EFT): the label whose rating is nearest the
    sample's gold reward, the reward in [0, 1] spread over the scale's range."""
    lo, hi = min(values), max(values)
    records = []
    for r in samples:
        target = lo + r["reward"] * (hi - lo)
        label = labels[min(range(len(values)), key=lambda i: abs(values[i] - target))]
        records.append({"prompt": template.format(prompt=r["prompt"], response=r["completion"]), "completion": label})
    return records


class _Principled:
    """One principle per call drawn from `principles` by (seed, item), the same for both orders; or, with
    `ensemble`, every principle, the item's judgement averaged over them (CAI's ensemble)."""

    principles: list[str] | None
    ensemble: bool
    seed: int

    def _principles(self, n: int) -> list[list[str]]:
        if not self.principles:
            return [[""]] * n
        if self.ensemble:
            return [self.principles] * n
        return [[random.Random(f"{self.seed}-{i}").choice(self.principles)] for i in range(n)]


class PairwiseJudge(_Principled):
    """Scores k responses to a prompt by round-robin pairwise judgments: a response's score is half its mean
    log-odds of beating each other response, both orders averaged. For k = 2 that makes sigma(r_w - r_l) the
    debiased P(y_w better than y_l), so it slots into the same judge stage as a reward model."""

    def __init__(
        self,
        policy: Policy,
        template: str,
        labels: tuple[str, str],
        batch_size: int = 256,
        principles: list[str] | None = None,
        ensemble: bool = False,
        cot_template: str | None = None,
        decode: Decoder | None = None,
        clamp: tuple[float, float] = (0.4, 0.6),
        min_mass: float = 1e-4,
        seed: int = 0,
        swap: bool = True,
        engine: EngineLogprobs | None = None,
    ):
        if (cot_template is None) != (decode is None):
            raise ValueError("a chain-of-thought judge needs both cot_template and decode")
        self.policy, self.template, self.batch_size = policy, template, batch_size
        self.principles, self.ensemble, self.seed = principles, ensemble, seed
        self.cot_template, self.decode, self.clamp, self.min_mass = cot_template, decode, clamp, min_mass
        self.swap, self.engine = swap, engine
        self.label_ids = label_ids(policy, labels)
        self.name = f"pairwise:{policy.source}" + (":cot" if decode else "")

    def first_wins(
        self, prompts: list[str], firsts: list[str], seconds: list[str], principles: list[str]
    ) -> tuple[list[float], list[float], list[str]]:
        """P(first better) in the order given, the label tokens' mass, and the rationale (empty without CoT)."""
        fields = [
            {"prompt": p, "first": a, "second": b, "principle": c}
            for p, a, b, c in zip(prompts, firsts, seconds, principles)
        ]
        rationales = [""] * len(fields)
        texts = [self.template.format(**f) for f in fields]
        if self.cot_template is not None and self.decode is not None:
            head, _, _ = self.cot_template.partition("{rationale}")
            rationales = self.decode([head.format(**f) for f in fields])
            texts = [self.cot_template.format(**f, rationale=r) for f, r in zip(fields, rationales)]
        read = next_label_probs(self.policy, texts, self.label_ids, self.batch_size, self.engine)
        probs = [p[0] for p, _ in read]
        if self.decode is not None:
            lo, hi = self.clamp
            probs = [min(max(p, lo), hi) for p in probs]
        return probs, [m for _, m in read], rationales

    def judgements(self, prompts: list[str], a: list[str], b: list[str]) -> list[dict]:
        """Per pair: p = P(a better than b) averaged over both orders (and over the principles of an ensemble),
        `orders` = P(a better) with a shown first and with b shown first, the label mass of each order, the
        principle(s), the rationales, and whether the verdict was parseable in both orders. Without `swap`, only
        a is shown first and p is that order's label (what the position bias costs)."""
        chosen = self._principles(len(prompts))
        items = [(i, c) for i, cs in enumerate(chosen) for c in cs]
        args = [[prompts[i] for i, _ in items], [a[i] for i, _ in items], [b[i] for i, _ in items]]
        principles = [c for _, c in items]
        fwd, fwd_mass, fwd_why = self.first_wins(args[0], args[1], args[2], principles)
        if self.swap:
            bwd, bwd_mass, bwd_why = self.first_wins(args[0], args[2], args[1], principles)
        else:  # stands for an order that agrees with the first, so that p = f below
            bwd, bwd_mass, bwd_why = [1 - f for f in fwd], fwd_mass, [""] * len(fwd)
        per_pair: list[list[tuple]] = [[] for _ in prompts]
        for k, (i, c) in enumerate(items):
            valid = min(fwd_mass[k], bwd_mass[k]) >= self.min_mass
            per_pair[i].append((fwd[k], 1 - bwd[k], fwd_mass[k], bwd_mass[k], c, fwd_why[k], bwd_why[k], valid))
        out = []
        for judged in per_pair:
            ok = [j for j in judged if j[-1]]
            # 0.5 + (f - r) / 2 rather than (f + 1 - r) / 2: exactly 0.5 when both orders agree on a position
            p = sum(0.5 + (f - (1 - r)) / 2 for f, r, *_ in ok) / len(ok) if ok else 0.5
            out.append(
                {
                    "p": p,
                    "orders": [_mean([j[0] for j in ok]), _mean([j[1] for j in ok]) if self.swap else None],
                    "label_mass": [min(j[2] for j in judged), min(j[3] for j in judged)],
                    "principles": [j[4] for j in judged if j[4]],
                    "rationales": [[j[5], j[6]] for j in judged if j[5] or j[6]],
                    "valid": bool(ok),
                }
            )
        return out

    def preferences(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        """P(a better than b), averaged over both presentation orders."""
        return [j["p"] for j in self.judgements(prompts, a, b)]

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


class PointwiseJudge(_Principled):
    """d-RLAIF's judge as a scorer: each response rated on the scale `labels` (single tokens; their ratings are
    `values`, by default the labels read as numbers: a tokenizer that splits digits has no single-token "10", so
    use 0-9 or a 1-5 rubric there)."""

    def __init__(
        self,
        policy: Policy,
        template: str,
        labels: Sequence[str] = ("1", "2", "3", "4", "5"),
        values: Sequence[float] | None = None,
        batch_size: int = 256,
        principles: list[str] | None = None,
        ensemble: bool = False,
        min_mass: float = 1e-4,
        seed: int = 0,
        engine: EngineLogprobs | None = None,
    ):
        self.policy, self.template, self.batch_size, self.engine = policy, template, batch_size, engine
        self.principles, self.ensemble, self.seed, self.min_mass = principles, ensemble, seed, min_mass
        self.label_ids = label_ids(policy, labels)
        try:
            self.values = [float(x) for x in (labels if values is None else values)]
        except ValueError:
            raise ValueError(f"pointwise labels must be numbers or have values, got {list(labels)}") from None
        if len(self.values) != len(labels):
            raise ValueError(f"{len(self.values)} values for {len(labels)} labels")
        self.name = f"pointwise:{policy.source}"

    def ratings(self, prompts: list[str], responses: list[str]) -> list[dict]:
        """Per response: `score` in [-1, 1], the expected rating, the label distribution and mass, validity."""
        chosen = self._principles(len(prompts))
        items = [(i, c) for i, cs in enumerate(chosen) for c in cs]
        texts = [self.template.format(prompt=prompts[i], response=responses[i], principle=c) for i, c in items]
        read = next_label_probs(self.policy, texts, self.label_ids, self.batch_size, self.engine)
        lo, hi = min(self.values), max(self.values)
        per: list[list[tuple[float, list[float], float]]] = [[] for _ in prompts]
        for (i, _), (probs, mass) in zip(items, read):
            per[i].append((sum(v * q for v, q in zip(self.values, probs)), probs, mass))
        out = []
        for rated in per:
            expected = _mean([r[0] for r in rated if r[2] >= self.min_mass])
            out.append(
                {
                    "score": 0.0 if expected is None else 2 * (expected - lo) / (hi - lo) - 1,
                    "expected": expected,
                    "probs": [r[1] for r in rated],
                    "label_mass": [r[2] for r in rated],
                    "valid": expected is not None,
                }
            )
        return out

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        return [r["score"] for r in self.ratings([p.prompt for p in problems], completions)]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _log_odds(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))
