"""This process's place in a launch: accelerate's PartialState, made the same way everywhere.

On a machine without CUDA, processes started by `accelerate launch --multi_gpu --num_processes N` (or torchrun)
form a gloo group only if accelerate is told the run is on CPU; otherwise each trains alone, with no gradient
sync. A process whose launch promised more processes (WORLD_SIZE) than the group holds is stopped. Under a
DeepSpeed launch the reverse holds: told it is on CPU, accelerate quietly trains under DDP instead, so there the
group is a gloo one formed for DeepSpeed.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch
from accelerate import PartialState

from selfalign.errors import SelfAlignError


def on_cpu() -> bool:
    return not torch.cuda.is_available()


def uses_deepspeed() -> bool:
    """Launched by `accelerate launch` with a DeepSpeed config."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true")


def uses_fsdp() -> bool:
    """Launched by `accelerate launch` with an FSDP config."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def cpu_mode() -> bool:
    """What accelerate's `cpu` flag must say: on CPU, except under DeepSpeed (which it would drop for DDP)."""
    return on_cpu() and not uses_deepspeed()


def gathered(module: torch.nn.Module) -> AbstractContextManager:
    """A context in which `module`'s parameters are whole on every process. Under DeepSpeed ZeRO-3 each process holds
    a shard of every parameter after training: this gathers them (every process must enter it); otherwise no-op."""
    sharded = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not sharded:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(sharded, modifier_rank=None)


def process_state() -> PartialState:
    gloo = {"backend": "gloo"} if on_cpu() and uses_deepspeed() else {}
    state = PartialState(cpu=cpu_mode(), **gloo)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != launched:
        raise SelfAlignError(
            f"launched as one of {launched} processes, but the process group has {state.num_processes}: the "
            "processes would train alone, without gradient sync (on a CPU, launch with `accelerate launch "
            "--multi_gpu --num_processes N`, or configs/accelerate/ddp_cpu.yaml)"
        )
    return state
