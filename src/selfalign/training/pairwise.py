"""Pairwise preference training (the DPO family) on the shared training loop.

Chosen and rejected completions go through one concatenated forward pass. The reference log-probs
are either computed once before training (the policy before its first step *is* the reference, so no
copy is needed) or by a frozen reference each step; under LoRA that reference is the same model with
its adapters disabled.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from selfalign.batching import Batch, batched_forward, collate_pairs, encode_pair, model_inputs, pair_length
from selfalign.config import PreferenceConfig, RefinementConfig, TrainingConfig
from selfalign.distributed import process_state
from selfalign.models import Policy
from selfalign.training import objectives as obj
from selfalign.training.spa import Refiner
from selfalign.training.trainer import Records, forward_precision, train_and_save


def split_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(chosen logps, rejected logps, chosen tokens, rejected tokens), each [B], from concatenated rows."""
    logps, tokens = obj.sequence_logprobs(logits, labels)
    return (*logps.chunk(2), *tokens.chunk(2))


def concatenated_logps(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
    """split_logps of one forward pass over chosen and rejected together."""
    return split_logps(model(**model_inputs(batch)).logits, batch["labels"])


@contextmanager
def reference_of(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model as its own reference: adapters disabled under peft, itself otherwise (before training)."""
    inner = getattr(model, "module", model)  # unwrapped from DDP: a no-grad forward needs no gradient sync
    if hasattr(inner, "disable_adapter"):
        with inner.disable_adapter():
            yield inner
    else:
        yield model


def precompute_reference(policy: Policy, data: list[dict], batch_size: int, precision: str) -> None:
    """Store the reference log-probs of every pair in place (one pass, before any update), on the training
    device in the training's forward precision."""

    def read(model: torch.nn.Module, batch: Batch) -> list[tuple[float, float]]:
        chosen, rejected, _, _ = concatenated_logps(model, batch)
        return list(zip(chosen.tolist(), rejected.tolist()))

    collate = partial(collate_pairs, pad_id=policy.tokenizer.pad_token_id)
    device = process_state().device
    with reference_of(policy.model.to(device)) as ref, forward_precision(precision, device):
        logps = batched_forward(ref, data, collate, read, batch_size, length=pair_length)
    for x, (c, r) in zip(data, logps):
        x["ref_chosen"], x["ref_rejected"] = c, r


def preference_loss(
    cfg: PreferenceConfig,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    epsilon: torch.Tensor,
) -> torch.Tensor:
    """Per-pair loss of the configured objective."""
    c, r = chosen - ref_chosen, rejected - ref_rejected
    if cfg.loss == "sigmoid":
        return obj.dpo_loss(c, r, cfg.beta, epsilon)
    if cfg.loss == "robust":
        return obj.robust_dpo_loss(c, r, cfg.beta, cfg.label_smoothing)
    if cfg.loss == "ipo":
        return obj.ipo_loss(c, r, chosen_tokens, rejected_tokens, cfg.beta)
    return obj.dpo_nll_loss(c, r, chosen, chosen_tokens, cfg.beta, cfg.nll_alpha)


def train_pairwise(
    policy: Policy,
    pairs: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    pref: PreferenceConfig,
    seed: int = 0,
    steps: int | None = None,
    max_length: int | None = None,
    desc: str = "preference training",
    refinement: RefinementConfig | None = None,
) -> list[dict]:
    """Train `policy` on prompt/chosen/rejected records (optional per-pair `epsilon`); save to `out_dir`.

    With `refinement` (SPA, sigmoid loss only) the least-confident pairs of each batch get label
    smoothing; confidence needs the reference's logits, so the reference runs every step.
    Logs per step: loss, reward accuracy and margin (implicit rewards beta x log-ratio), chosen and
    rejected log-probs, and mean chosen/rejected response length in tokens.
    """
    if refinement is not None and pref.loss != "sigmoid":
        raise ValueError("SPA refinement is defined for the sigmoid (DPO) loss only")
    data = [{**encode_pair(policy, p, max_length), "epsilon": p.get("epsilon")} for p in pairs]
    frozen = None
    if pref.reference == "precompute" and refinement is None:
        precompute_reference(policy, data, cfg.batch_size, cfg.mixed_precision)
    elif not hasattr(policy.model, "disable_adapter"):
        frozen = copy.deepcopy(policy.model).eval().requires_grad_(False)
    pad_id = policy.tokenizer.pad_token_id
    refiner = None
    if refinement is not None:
        refiner = Refiner(refinement, pref.beta, (steps or cfg.steps) * cfg.grad_accum)

    @torch.no_grad()
    def reference_logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        if frozen is not None:
            return frozen.to(batch["input_ids"].device)(**model_inputs(batch)).logits
        with reference_of(model) as ref:
            return ref(**model_inputs(batch)).logits

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        logits = model(**model_inputs(batch)).logits
        chosen, rejected, n_c, n_r = split_logps(logits, batch["labels"])
        extra, epsilon = {}, batch["epsilon"]
        if "ref_chosen" in batch:
            ref_c, ref_r = batch["ref_chosen"], batch["ref_rejected"]
        else:
            ref_logits = reference_logits(model, batch)
            ref_c, ref_r, _, _ = split_logps(ref_logits, batch["labels"])
            if refiner is not None:
                epsilon = refiner.epsilon(refiner.confidence(logits, ref_logits, batch["labels"], ref_c, ref_r))
                extra["spa/smoothed"] = (epsilon > 0).float().mean()
        losses = preference_loss(pref, chosen, rejected, ref_c, ref_r, n_c, n_r, epsilon)
        reward_c = obj.implicit_reward(chosen, ref_c, pref.beta).detach()
        reward_r = obj.implicit_reward(rejected, ref_r, pref.beta).detach()
        return losses.mean(), {
            "rewards/accuracy": (reward_c > reward_r).float().mean(),
            "rewards/margin": (reward_c - reward_r).mean(),
            "rewards/chosen": reward_c.mean(),
            "rewards/rejected": reward_r.mean(),
            "logps/chosen": chosen.detach().mean(),
            "logps/rejected": rejected.detach().mean(),
            "length/chosen": n_c.float().mean(),
            "length/rejected": n_r.float().mean(),
            **extra,
        }

    collate = partial(collate_pairs, pad_id=pad_id, defaults={"epsilon": pref.label_smoothing})
    source = Records(data, collate, [pair_length(x) for x in data])
    stateful = (refiner,) if refiner is not None else ()
    return train_and_save(
        policy, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc, stateful=stateful
    )
