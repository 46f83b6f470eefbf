"""Train a tiny model of one trainer kind on fixed data and dump the loss curve and the trained weights' checksum
(run alone, or under `accelerate launch` with several processes)."""

import json
import os
import sys

import torch

from selfalign.config import ArithmeticTaskConfig, PreferenceConfig, TrainingConfig
from selfalign.distributed import gathered, process_state
from selfalign.models import load
from selfalign.tasks.arithmetic import ArithmeticTask, solution
from selfalign.training.orm_prm import train_prm
from selfalign.training.pairwise import train_pairwise
from selfalign.training.reward import train_reward
from selfalign.training.trainer import train_sft

model_dir, out, kind = sys.argv[1], sys.argv[2], sys.argv[3]
batch_size, grad_accum = int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
state = process_state()
assert state.num_processes == int(os.environ.get("WORLD_SIZE", "1"))
task = ArithmeticTask(ArithmeticTaskConfig(train_digits=[2, 3], n_train=64, eval_digits=[1], n_eval=1))
problems = task.train_problems(1, seed=0)
sft = [{"prompt": p.prompt, "completion": solution(p)} for p in problems]
pairs = [{**r, "chosen": r["completion"], "rejected": r["completion"][:-2] + "9"} for r in sft]
halves = [(r["completion"][: len(r["completion"]) // 2], r["completion"][len(r["completion"]) // 2 :]) for r in sft]
steps = [
    {"prompt": r["prompt"], "completions": list(h), "labels": [True, i % 2 == 0]}
    for i, (r, h) in enumerate(zip(sft, halves))
]
cfg = TrainingConfig(lr=3e-3, steps=8, batch_size=batch_size, grad_accum=grad_accum, warmup_ratio=0.0)
ckpt = out + ".checkpoint"
torch.manual_seed(0)  # a fresh head is drawn the same in every process
if kind == "sft":
    model = load("policy", model_dir)
    log = train_sft(model, sft, cfg, out_dir=ckpt, seed=0)
elif kind == "pairs":
    model = load("policy", model_dir, dtype="float32")
    log = train_pairwise(model, pairs, cfg, ckpt, pref=PreferenceConfig(beta=0.1))
elif kind == "reward":
    model = load("reward", model_dir)
    log = train_reward(model, pairs, cfg, ckpt)
else:
    model = load("prm", model_dir)
    for module in model.model.modules():  # the token-classification head's dropout draws its masks per process
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    log = train_prm(model, steps, cfg, ckpt)
with gathered(model.model):  # ZeRO-3 leaves each process a shard of every weight
    checksum = sum(p.double().sum().item() for p in model.model.parameters())
if state.is_main_process:
    saved = load({"sft": "policy", "pairs": "policy"}.get(kind, kind), ckpt)
    reloaded = sum(p.double().sum().item() for p in saved.model.parameters())
    with open(out, "w") as f:
        row = {"loss": [e["loss"] for e in log], "checksum": checksum, "reloaded": reloaded}
        json.dump({**row, "processes": state.num_processes}, f)
