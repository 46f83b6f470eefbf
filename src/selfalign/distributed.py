"""This process's place in a launch: accelerate's PartialState, made the same way everywhere.

On a machine without CUDA, processes started by `accelerate launch --multi_gpu --num_processes N` (or torchrun)
form a gloo group only if accelerate is told the run is on CPU; otherwise each trains alone, with no gradient
sync. A process whose launch promised more processes (WORLD_SIZE) than the group holds is stopped.
"""

from __future__ import annotations

import os

import torch
from accelerate import PartialState

from selfalign.errors import SelfAlignError


def on_cpu() -> bool:
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    state = PartialState(cpu=on_cpu())
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != launched:
        raise SelfAlignError(
            f"launched as one of {launched} processes, but the process group has {state.num_processes}: the "
            "processes would train alone, without gradient sync (on a CPU, launch with `accelerate launch "
            "--multi_gpu --num_processes N`, or configs/accelerate/ddp_cpu.yaml)"
        )
    return state
