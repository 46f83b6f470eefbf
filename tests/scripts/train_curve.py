"""Train a tiny model on fixed arithmetic data and dump the loss curve (run under accelerate launch)."""

import json
import sys

import torch

from selfalign.config import ArithmeticTaskConfig, TrainingConfig
from selfalign.models.loading import load_policy
from selfalign.tasks.arithmetic import ArithmeticTask, solution
from selfalign.training.trainer import train_sft

model_dir, out, batch_size, grad_accum = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
task = ArithmeticTask(ArithmeticTaskConfig(train_digits=[2, 3], n_train=64, eval_digits=[1], n_eval=1))
records = [{"prompt": p.prompt, "completion": solution(p)} for p in task.train_problems(1, seed=0)]
cfg = TrainingConfig(lr=3e-3, steps=12, batch_size=batch_size, grad_accum=grad_accum, warmup_ratio=0.0)
log = train_sft(load_policy(model_dir), records, cfg, out_dir=None, seed=0)
if int(__import__("os").environ.get("RANK", "0")) == 0:
    with open(out, "w") as f:
        json.dump([e["loss"] for e in log], f)
