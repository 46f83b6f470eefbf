"""One training engine on accelerate: runs as is under `accelerate launch` (DDP/FSDP/DeepSpeed).

Global batch = batch_size x num_processes x grad_accum. Loss is on completion tokens only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from selfalign.config import TrainingConfig
from selfalign.models.loading import Policy
from selfalign.training.collate import encode_sft, pad_right
from selfalign.training.objectives import sft_nll

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _scheduler(cfg: TrainingConfig, optimizer: torch.optim.Optimizer, steps: int):
    warmup = math.ceil(cfg.warmup_ratio * steps)
    if cfg.scheduler == "warmup_stable_decay":
        # Lee et al. 2025 train each round with WSD: stable for the first half, linear decay after.
        return get_scheduler(
            "warmup_stable_decay",
            optimizer,
            num_warmup_steps=warmup,
            num_training_steps=steps,
            scheduler_specific_kwargs={"num_decay_steps": (steps - warmup) // 2},
        )
    return get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=steps)


Batch = dict[str, torch.Tensor]
# compute_loss(model, batch) -> (scalar loss, per-step metrics to log)
LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def train_loop(
    model: torch.nn.Module,
    data: list[dict],
    collate: Callable[[list[dict]], Batch],
    compute_loss: LossFn,
    cfg: TrainingConfig,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "training",
    lengths: list[int] | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """The one optimisation loop: shuffled epochs, grad accumulation, warmup schedule, clipping, logging.

    With `lengths` (padded length of each example) and cfg.group_by_length, batches hold examples of
    similar length, so less compute is spent on padding. Returns the unwrapped model (in eval mode)
    and the per-step log (loss, lr, grad_norm, metrics).
    """
    if not data:
        raise ValueError("no training records")
    steps = steps or cfg.steps
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
    )
    set_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    drop_last = len(data) >= cfg.batch_size * accelerator.num_processes
    if cfg.group_by_length and lengths is not None:
        sampler = LengthGroupedBatchSampler(lengths, cfg.batch_size, generator, drop_last)
        loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate)
    else:
        loader = DataLoader(
            data, batch_size=cfg.batch_size, shuffle=True, drop_last=drop_last, collate_fn=collate, generator=generator
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    scheduler = _scheduler(cfg, optimizer, steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    def batches():
        epoch = 0
        while True:
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    log: list[dict] = []
    stream = batches()
    bar = tqdm(total=steps, desc=desc, unit="step", leave=False, disable=not accelerator.is_main_process)
    for step in range(1, steps + 1):
        losses, metrics = [], {}
        for _ in range(cfg.grad_accum):
            batch = next(stream)
            with accelerator.accumulate(model):
                loss, extra = compute_loss(model, batch)
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            for k, v in extra.items():
                metrics.setdefault(k, []).append(v.detach().float())
        loss_value = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
        entry = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]}
        if grad_norm is not None:
            entry["grad_norm"] = float(grad_norm)
        for k, v in metrics.items():
            entry[k] = accelerator.reduce(torch.stack(v).mean(), reduction="mean").item()
        log.append(entry)
        bar.update(1)
        if step % cfg.log_every == 0 or step == steps:
            bar.set_postfix(loss=f"{loss_value:.4f}")
    bar.close()
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model.eval()
    return model, log


class LengthGroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Shuffled batches of similar-length examples (HF `group_by_length`): each epoch shuffles, sorts
    within mega-batches of 50 batches, cuts batches, and shuffles the batch order."""

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator, drop_last: bool):
        self.lengths, self.batch_size, self.generator, self.drop_last = lengths, batch_size, generator, drop_last

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        mega = 50 * self.batch_size
        batches = []
        for i in range(0, len(order), mega):
            group = sorted(order[i : i + mega], key=lambda j: -self.lengths[j])
            batches += [group[k : k + self.batch_size] for k in range(0, len(group), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        for k in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[k]

    def __len__(self) -> int:
        n = len(self.lengths) // self.batch_size
        return n if self.drop_last else n + bool(len(self.lengths) % self.batch_size)


def train_sft(
    policy: Policy,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    seed: int = 0,
    steps: int | None = None,
    objective: Objective = sft_nll,
    max_length: int | None = None,
    desc: str = "training",
) -> list[dict]:
    """Fine-tune `policy` on prompt/completion records; save a checkpoint to `out_dir` atomically.

    Returns the per-step log (loss, lr, grad_norm), also written to out_dir/train_log.jsonl.
    """
    data = [encode_sft(policy, r["prompt"], r["completion"], max_length) for r in records]
    pad_id = policy.tokenizer.pad_token_id

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return objective(out.logits, batch["labels"]), {}

    lengths = [len(x["input_ids"]) for x in data]
    return train_and_save(
        policy, data, lambda b: pad_right(b, pad_id), compute_loss, cfg, out_dir, seed, steps, desc, lengths
    )


def train_and_save(
    policy: Policy,
    data: list[dict],
    collate: Callable[[list[dict]], Batch],
    compute_loss: LossFn,
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    seed: int,
    steps: int | None,
    desc: str,
    lengths: list[int] | None,
) -> list[dict]:
    """`train_loop` on policy.model, then save the trained policy (main process only) to `out_dir`."""
    policy.model, log = train_loop(policy.model, data, collate, compute_loss, cfg, seed, steps, desc, lengths)
    state = PartialState()
    if out_dir is not None and state.is_main_process:
        save_checkpoint(policy, out_dir, log)
    state.wait_for_everyone()
    return log


def save_checkpoint(policy: Policy, out_dir: str | Path, log: list[dict] | None = None) -> None:
    """save_pretrained into a temp dir, then rename: a checkpoint directory is either whole or absent."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.model.save_pretrained(tmp)
    policy.tokenizer.save_pretrained(tmp)
    if log is not None:
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
