"""From records to padded tensors, and batched no-grad forwards. The lowest layer that knows about tokens.

Batch layouts (all right-padded; IGNORE marks positions no loss or score reads):
- SFT:      input_ids, attention_mask [B, T]; labels [B, T] = completion token ids, IGNORE on the prompt.
- pairs:    rows 0..B-1 are the chosen completions, B..2B-1 the rejected ones, padded together, plus one
            [B] tensor per scalar pair field (epsilon, margin, ref_chosen, ref_rejected).
- stepwise: labels [B, T] = a step's class on the last token of step + separator, IGNORE elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, Protocol

import torch

from selfalign.records import LabelKind, check_label_kind, label_problem

IGNORE = -100
Batch = dict[str, torch.Tensor]


class PromptEncoder(Protocol):
    """What encoding needs of a model: how it formats a prompt (chat template or not) and a completion."""

    tokenizer: Any

    def encode_prompt(self, prompt: str) -> list[int]: ...

    def encode_completion(self, completion: str, eos: bool = True) -> list[int]: ...


def encode_sft(
    model: PromptEncoder, prompt: str, completion: str, max_length: int | None = None, eos: bool = True
) -> dict:
    p, c = model.encode_prompt(prompt), model.encode_completion(completion, eos)
    ids = (p + c)[:max_length] if max_length else p + c
    labels = ([IGNORE] * len(p) + c)[: len(ids)]
    return {"input_ids": ids, "labels": labels}


def encode_pair(model: PromptEncoder, pair: dict, max_length: int | None = None) -> dict:
    """A preference pair as two SFT rows; scalar fields (epsilon, margin) are added by the trainer. A
    `rejected_partial` rejected response is a solution cut at its critical step: no EOS, which it never had."""
    return {
        "chosen": encode_sft(model, pair["prompt"], pair["chosen"], max_length),
        "rejected": encode_sft(model, pair["prompt"], pair["rejected"], max_length, not pair.get("rejected_partial")),
    }


def pair_length(x: dict) -> int:
    """Chosen and rejected are padded together, so a pair costs its longer side."""
    return max(len(x["chosen"]["input_ids"]), len(x["rejected"]["input_ids"]))


def class_id(label: object, label_kind: LabelKind) -> int:
    if (problem := label_problem(label, label_kind)) is not None:
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
    check_label_kind(label_kind)
    if label_kind == "soft":
        raise ValueError("soft labels are not supported for token classification; use binary or ternary labels")
    if len(labels) != len(steps):
        raise ValueError(f"{len(labels)} labels for {len(steps)} steps (need one label per step)")
    classes = [class_id(label, label_kind) for label in labels]
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


def pad_right(batch: list[dict], pad_id: int) -> Batch:
    """Rows of input_ids/labels -> input_ids, labels, attention_mask [B, T]."""
    width = max(len(x["input_ids"]) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        n = len(x["input_ids"])
        ids[i, :n] = torch.tensor(x["input_ids"])
        labels[i, :n] = torch.tensor(x["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def collate_pairs(batch: list[dict], pad_id: int, defaults: dict[str, float] | None = None) -> Batch:
    """Chosen rows then rejected rows, padded together, plus a float [B] tensor for each scalar field of the
    pairs (epsilon, margin, ref_chosen, ...). A pair whose value is None or missing takes the field's default; a
    field that some pair lacks and that has no default is left out."""
    out = pad_right([x["chosen"] for x in batch] + [x["rejected"] for x in batch], pad_id)
    defaults = defaults or {}
    keys = dict.fromkeys([k for x in batch for k in x if k not in ("chosen", "rejected")] + list(defaults))
    for key in keys:
        values = [defaults.get(key) if x.get(key) is None else x[key] for x in batch]
        if None not in values:
            out[key] = torch.tensor(values, dtype=torch.float)
    return out


def model_inputs(batch: Batch) -> Batch:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@torch.no_grad()
def batched_forward(
    model: torch.nn.Module,
    rows: Sequence[dict],
    collate: Callable[[list[dict]], Batch],
    read: Callable[[torch.nn.Module, Batch], Sequence[Any]],
    batch_size: int = 256,
    length: Callable[[dict], int] = lambda r: len(r["input_ids"]),
) -> list[Any]:
    """`read(model, batch)` -> one result per row, run over length-sorted batches (little padding) with the
    model in eval mode; results come back in input order. Every scorer and the DPO reference pass use it."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: length(rows[i]))
    out: list[Any] = [None] * len(rows)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        batch = {k: v.to(device) for k, v in collate([rows[i] for i in idx]).items()}
        for i, value in zip(idx, read(model, batch)):
            out[i] = value
    model.train(was_training)
    return out
