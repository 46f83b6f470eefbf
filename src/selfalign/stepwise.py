"""Stepwise data for process reward models (PRMs): TRL's `prompt`/`completions`/`labels` format.

A record holds a prompt, the solution's steps (`completions`, one string per step) and one label per
step. Three label kinds are supported:
- binary:  True/False (or 1/0), as in TRL's stepwise datasets and Math-Shepherd with hard labels;
- ternary: -1/0/1 (bad/neutral/good), as in PRM800K;
- soft:    a number in [0, 1], e.g. Math-Shepherd's fraction of successful rollouts.

Labels come from a checker (`step_labels_from_check`, PRM800K-style) or from Monte Carlo rollouts
(`mc_step_labels`, Math-Shepherd-style). `encode_stepwise` tokenizes a record for a
token-classification PRM the way TRL's PRMTrainer does, and `aggregate` / `predicted_first_error`
turn a PRM's per-step scores into a solution score and a located first error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Literal

from selfalign.errors import InputError
from selfalign.records import iter_jsonl
from selfalign.training.objectives import IGNORE

LabelKind = Literal["binary", "ternary", "soft"]
LABEL_KINDS = ("binary", "ternary", "soft")
FIELDS = ("prompt", "completions", "labels")
# the value of a correct / the first incorrect step, per label kind
POSITIVE = {"binary": True, "ternary": 1, "soft": 1.0}
NEGATIVE = {"binary": False, "ternary": -1, "soft": 0.0}
CLASSES = {"binary": 2, "ternary": 3}  # token-classification head sizes; soft labels have no classes


def _check_kind(label_kind: str) -> None:
    if label_kind not in LABEL_KINDS:
        raise ValueError(f"label_kind must be one of {LABEL_KINDS}, got {label_kind!r}")


def _label_problem(label: object, label_kind: str) -> str | None:
    """Why `label` is not a valid label of this kind, or None when it is."""
    if label_kind == "binary":
        # bool is a subclass of int; any bool is fine, other ints only 0 and 1
        if isinstance(label, bool) or (isinstance(label, int) and label in (0, 1)):
            return None
        return f"must be a bool or 0/1, got {label!r}"
    if label_kind == "ternary":
        # a bool here almost certainly means a binary file loaded as ternary: refuse it rather than read True as 1
        if not isinstance(label, bool) and isinstance(label, int) and label in (-1, 0, 1):
            return None
        return f"must be -1, 0 or 1, got {label!r}"
    if not isinstance(label, bool) and isinstance(label, int | float) and 0.0 <= label <= 1.0:  # NaN fails the range
        return None
    return f"must be a number in [0, 1], got {label!r}"


def load_stepwise(path: str | Path, label_kind: LabelKind = "binary") -> list[dict]:
    """Read and validate a stepwise JSONL; every error names the file, line and field."""
    _check_kind(label_kind)
    path = Path(path)
    records = []
    for lineno, rec in iter_jsonl(path, required=FIELDS):
        prompt, steps, labels = rec["prompt"], rec["completions"], rec["labels"]
        if not isinstance(prompt, str):
            raise InputError(path, f"must be a string, got {type(prompt).__name__}", line=lineno, field="prompt")
        if not isinstance(steps, list) or not steps:
            raise InputError(path, "must be a non-empty list of steps", line=lineno, field="completions")
        for i, step in enumerate(steps):
            if not isinstance(step, str):
                msg = f"step at index {i} must be a string, got {type(step).__name__}"
                raise InputError(path, msg, line=lineno, field="completions")
            if not step.strip():
                raise InputError(path, f"empty step at index {i}", line=lineno, field="completions")
        if not isinstance(labels, list):
            raise InputError(path, f"must be a list, got {type(labels).__name__}", line=lineno, field="labels")
        if len(labels) != len(steps):
            msg = f"has {len(labels)} labels for {len(steps)} steps in 'completions' (need one label per step)"
            raise InputError(path, msg, line=lineno, field="labels")
        for i, label in enumerate(labels):
            if (problem := _label_problem(label, label_kind)) is not None:
                raise InputError(path, f"{label_kind} label at index {i} {problem}", line=lineno, field="labels")
        records.append(rec)
    if not records:
        raise InputError(path, "no stepwise records")
    return records


def step_labels_from_check(n_steps: int, first_error: int | None, label_kind: LabelKind) -> list:
    """Ground-truth step labels from a checker result, PRM800K-style.

    Steps before `first_error` are positive and the first wrong step is negative; steps after it are
    dropped, so the list has `first_error + 1` labels (all `n_steps` when there is no error). PRM800K
    supervises only up to the first incorrect step: once a step is wrong, whether later steps are
    "correct" is ill-defined (they build on a wrong state), and a PRM only needs to find the first error.
    `first_error == n_steps` (what `ArithmeticTask.check` reports when steps are missing at the end)
    flags no step that exists, so every given step is positive.
    """
    _check_kind(label_kind)
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    if first_error is not None and not 0 <= first_error <= n_steps:
        raise ValueError(f"first_error must lie in [0, {n_steps}], got {first_error}")
    if first_error is None or first_error == n_steps:
        return [POSITIVE[label_kind]] * n_steps
    return [POSITIVE[label_kind]] * first_error + [NEGATIVE[label_kind]]


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


def _class_id(label: object, label_kind: str) -> int:
    if (problem := _label_problem(label, label_kind)) is not None:
        raise ValueError(f"{label_kind} label {problem}")
    # ternary -1/0/1 becomes classes 0/1/2 because cross-entropy targets must be non-negative
    return int(label) + 1 if label_kind == "ternary" else int(label)


def encode_stepwise(
    tokenizer,
    prompt: str | list[int],
    steps: list[str],
    labels: list,
    sep: str = " ",
    *,
    label_kind: LabelKind = "binary",
) -> dict:
    """Tokenize a stepwise record for a token-classification PRM, as TRL's PRMTrainer does.

    Input: [BOS if the tokenizer has one] + prompt + (step + sep) for each step, no EOS; a prompt given
    as token ids (e.g. `Policy.encode_prompt`, chat template applied) is used as is. Each piece is
    tokenized on its own with `add_special_tokens=False`, so no special tokens land between steps
    and every step's label sits on a known token: the last token of step + sep, i.e. the separator
    the model reads once the step is complete. Every other position is IGNORE. Classes:
    binary 0/1; ternary -1/0/1 -> 0/1/2. Soft labels need a regression head and raise ValueError.
    """
    _check_kind(label_kind)
    if label_kind == "soft":
        raise ValueError("soft labels are not supported for token classification; use binary or ternary labels")
    if len(labels) != len(steps):
        raise ValueError(f"{len(labels)} labels for {len(steps)} steps (need one label per step)")
    classes = [_class_id(label, label_kind) for label in labels]
    sep_ids = tokenizer(sep, add_special_tokens=False)["input_ids"]
    pieces = [tokenizer(step, add_special_tokens=False)["input_ids"] + sep_ids for step in steps]
    if any(not piece for piece in pieces):
        raise ValueError("a step and its separator tokenize to nothing, so the step's label has no position")
    if isinstance(prompt, str):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token_id is not None:
            prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    else:
        prompt_ids = list(prompt)
    step_labels = [[IGNORE] * (len(piece) - 1) + [c] for piece, c in zip(pieces, classes)]
    return {
        "input_ids": prompt_ids + list(chain.from_iterable(pieces)),
        "labels": [IGNORE] * len(prompt_ids) + list(chain.from_iterable(step_labels)),
    }
