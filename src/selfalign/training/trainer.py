"""One training engine on accelerate: runs as is under `accelerate launch` (DDP/FSDP/DeepSpeed).

Global batch = batch_size x num_processes x grad_accum. A step's batches come from a fixed record set
(`Records`: shuffled epochs, optionally length-grouped) or are produced during training (`Online`: e.g.
rollout -> score -> batch from the current model, for PPO/GRPO-style recipes). With `checkpoints` set, the
full training state (model, optimizer, scheduler, RNG, log, and any `stateful` helper) is saved every
`cfg.save_every` steps, and a restarted stage resumes from its last step checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from selfalign.batching import Batch, encode_sft, model_inputs, pad_right
from selfalign.config import TrainingConfig
from selfalign.distributed import cpu_mode, gathered, process_state, uses_fsdp
from selfalign.errors import SelfAlignError
from selfalign.models import Policy
from selfalign.training.objectives import sft_nll

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def forward_precision(setting: str, device: torch.device) -> torch.autocast:
    """Training's forward precision, for forwards outside the prepared model: a precomputed or frozen reference in
    fp32 against a bf16 policy would start DPO's implicit rewards off zero."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_mixed_precision(setting))
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


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


# compute_loss(model, batch) -> (scalar loss, per-step metrics to log)
LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class Records:
    """A fixed training set: encoded rows, how to collate them, and (for length grouping) each row's length."""

    data: list[dict]
    collate: Callable[[list[dict]], Batch]
    lengths: list[int] | None = None


class Online(Protocol):
    """Batches made during training: `next_batch(step, micro)` returns micro-batch `micro` of optimizer step
    `step` (1-based), built from the model being trained as it is now (the caller holds it). For a resumed stage
    to equal an uninterrupted one it must depend only on (step, micro) and the model's weights: seed any
    sampling from them. Called with the model in eval mode, under no_grad."""

    def next_batch(self, step: int, micro: int) -> Batch: ...


class Stateful(Protocol):
    """A training helper with state of its own (e.g. SPA's rolling confidence window), saved in step checkpoints."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainingDiverged(SelfAlignError):
    """The loss or gradient norm became NaN or infinite; the model is not saved."""


def train_loop(
    model: torch.nn.Module,
    source: Records | Online,
    compute_loss: LossFn,
    cfg: TrainingConfig,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "training",
    checkpoints: Path | None = None,
    stateful: tuple[Stateful, ...] = (),
) -> tuple[torch.nn.Module, list[dict]]:
    """The one optimisation loop: grad accumulation, warmup schedule, clipping, logging, a NaN guard, and step
    checkpoints in `checkpoints` (every cfg.save_every steps, when set) that a restarted call resumes from.

    Returns the unwrapped model (in eval mode) and the per-step log (loss, lr, grad_norm, metrics). Under DeepSpeed
    ZeRO-3 (offline sources only) each process then holds shards of the weights: read them in `distributed.gathered`.
    """
    steps = steps or cfg.steps
    if uses_fsdp():
        raise SelfAlignError(
            f"{desc}: FSDP is not supported: nothing gathers its sharded weights for the checkpoint (and on a CPU"
            " accelerate would quietly train under DDP instead); shard with configs/accelerate/deepspeed_zero3.yaml"
        )
    # accelerate keeps one process-wide AcceleratorState and refuses a second Accelerator with another mixed
    # precision (a bf16 policy stage after an fp32 reward stage on GPU); each stage has its own, so start afresh.
    # The PartialState (the process group) stays.
    AcceleratorState._reset_state()
    process_state()  # the process group first: an Accelerator made before it would miss a CPU launch's group
    accelerator = Accelerator(
        cpu=cpu_mode(),
        # `steps` counts optimizer steps of the whole group: accelerate would step the schedule once per process
        step_scheduler_with_optimizer=False,
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
    )
    if (deepspeed := accelerator.state.deepspeed_plugin) is not None:
        if deepspeed.zero_stage == 3 and not isinstance(source, Records):
            raise SelfAlignError(
                f"{desc}: DeepSpeed ZeRO-3 trains the offline trainers (SFT, preference pairs, reward models, PRMs);"
                " an online trainer samples from the policy at every step, which would gather every sharded weight"
                " each time: launch it with configs/accelerate/deepspeed_zero2.yaml or DDP"
            )
        # training.* decides these (accelerate would take the launch config's, whatever the Accelerator was told)
        deepspeed.deepspeed_config.update(
            train_micro_batch_size_per_gpu=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            gradient_clipping=cfg.max_grad_norm,
        )
    set_seed(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    scheduler = _scheduler(cfg, optimizer, steps)
    if isinstance(source, Records):
        loader = accelerator.prepare(_loader(source, cfg, seed, accelerator.num_processes))
        stream = _epochs(loader)
    else:
        stream = _online(source, model, cfg.grad_accum, accelerator)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    for obj in stateful:
        accelerator.register_for_checkpointing(obj)

    log: list[dict] = []
    if checkpoints is not None and (last := latest_step_checkpoint(checkpoints)) is not None:
        accelerator.load_state(str(last))
        log = [json.loads(line) for line in (last / "log.jsonl").read_text().splitlines()]
        if isinstance(source, Records):  # replay the data stream to where it stood (collation only, no forward)
            for _ in range(len(log) * cfg.grad_accum):
                next(stream)
        else:
            stream = _online(source, model, cfg.grad_accum, accelerator, start=len(log) + 1)
    bar = tqdm(
        total=steps, initial=len(log), desc=desc, unit="step", leave=False, disable=not accelerator.is_main_process
    )
    for step in range(len(log) + 1, steps + 1):
        losses, metrics = [], {}
        for _ in range(cfg.grad_accum):
            batch = next(stream)
            with accelerator.accumulate(model):
                with accelerator.autocast():  # covers a reference forward inside the loss too
                    loss, extra = compute_loss(model, batch)
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            for k, v in extra.items():
                metrics.setdefault(k, []).append(v.detach().float())
        loss_value = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
        entry = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0]}
        if grad_norm is not None:  # DeepSpeed clips inside its step and may not report the norm
            entry["grad_norm"] = float(grad_norm)
        # fp16's loss scaler skips steps with inf gradients by design; only a non-finite loss stops it
        watched = ("loss",) if accelerator.mixed_precision == "fp16" else ("loss", "grad_norm")
        if not all(math.isfinite(entry[k]) for k in watched if k in entry):
            raise TrainingDiverged(
                f"{desc}: training diverged at step {step} (loss {loss_value}, grad norm {entry.get('grad_norm')}, "
                f"lr {entry['lr']:g}); lower training.lr or check the data. Nothing was saved for this stage."
            )
        for k, v in metrics.items():
            entry[k] = accelerator.reduce(torch.stack(v).mean(), reduction="mean").item()
        log.append(entry)
        bar.update(1)
        if step % cfg.log_every == 0 or step == steps:
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if checkpoints is not None and cfg.save_every and step % cfg.save_every == 0 and step < steps:
            save_step_checkpoint(accelerator, checkpoints, log)
    bar.close()
    accelerator.wait_for_everyone()
    if deepspeed is not None and deepspeed.zero_stage == 3:
        from transformers.integrations import unset_hf_deepspeed_config

        # accelerate told transformers to shard every model it loads from now on: later stages (evaluation runs on
        # the main process alone) load whole models
        unset_hf_deepspeed_config()
    model = accelerator.unwrap_model(model)
    model.eval()
    return model, log


def _loader(source: Records, cfg: TrainingConfig, seed: int, num_processes: int) -> DataLoader:
    """Shuffled batches, length-grouped when cfg.group_by_length and the source gives lengths."""
    if not source.data:
        raise ValueError("no training records")
    generator = torch.Generator().manual_seed(seed)
    drop_last = len(source.data) >= cfg.batch_size * num_processes
    if cfg.group_by_length and source.lengths is not None:
        sampler = LengthGroupedBatchSampler(source.lengths, cfg.batch_size, generator, drop_last)
        return DataLoader(source.data, batch_sampler=sampler, collate_fn=source.collate)
    return DataLoader(
        source.data,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=drop_last,
        collate_fn=source.collate,
        generator=generator,
    )


def _epochs(loader: DataLoader) -> Iterator[Batch]:
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _online(
    source: Online, model: torch.nn.Module, grad_accum: int, accelerator: Accelerator, start: int = 1
) -> Iterator[Batch]:
    step = start
    while True:
        for micro in range(grad_accum):
            model.eval()
            # the rollout's old and reference log-probs in the loss's precision, so a first update's ratio is 1
            with torch.no_grad(), accelerator.autocast():
                batch = source.next_batch(step, micro)
            model.train()
            yield {k: v.to(accelerator.device) for k, v in batch.items()}
        step += 1


def latest_step_checkpoint(root: Path) -> Path | None:
    """The newest complete step checkpoint under `root` (an interrupted save leaves only a .tmp directory)."""
    done = [d for d in root.glob("step-*") if d.is_dir() and not d.name.endswith(".tmp")]
    return max(done, key=lambda d: int(d.name.split("-")[1]), default=None)


def save_step_checkpoint(accelerator: Accelerator, root: Path, log: list[dict]) -> None:
    """accelerate's full training state plus our log, into step-N.tmp then renamed; older ones are removed."""
    final = root / f"step-{len(log):06d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=False)  # tied embeddings: safetensors refuses shared tensors
    if accelerator.is_main_process:
        (tmp / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
        os.replace(tmp, final)
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


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
    *,
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
        return objective(model(**model_inputs(batch)).logits, batch["labels"]), {}

    source = Records(data, lambda b: pad_right(b, pad_id), [len(x["input_ids"]) for x in data])
    return train_and_save(policy, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc)


def train_and_save(
    policy: Policy,
    source: Records | Online,
    compute_loss: LossFn,
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    seed: int,
    steps: int | None,
    desc: str,
    stateful: tuple[Stateful, ...] = (),
    module: torch.nn.Module | None = None,
) -> list[dict]:
    """`train_loop` on policy.model, then save the trained policy (main process only) to `out_dir`.

    `module`, when given, is what trains instead: a module holding policy.model with parameters of its own (PPO's
    value head), all in one optimizer and in the step checkpoints; only policy.model is saved to `out_dir`.
    Step checkpoints live in `<out_dir>.steps/` while the stage runs and are removed once the model is saved."""
    checkpoints = None if out_dir is None else Path(out_dir).with_name(Path(out_dir).name + ".steps")
    trained, log = train_loop(
        policy.model if module is None else module,
        source,
        compute_loss,
        cfg,
        seed,
        steps,
        desc,
        checkpoints=checkpoints,
        stateful=stateful,
    )
    if module is None:  # else policy.model, inside `module`, was trained in place
        policy.model = trained
    state = process_state()
    with gathered(policy.model):  # ZeRO-3: every process lends its shards while the main process saves
        if out_dir is not None and state.is_main_process:
            save_checkpoint(policy, out_dir, log)
            shutil.rmtree(checkpoints, ignore_errors=True)
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
