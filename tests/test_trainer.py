import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfalign.batching import encode_sft, pad_right
from selfalign.config import TrainingConfig
from selfalign.models.loading import load_policy
from selfalign.training import objectives
from selfalign.training.objectives import IGNORE, sft_nll
from selfalign.training.trainer import train_sft

DDP_CPU = Path(__file__).parents[1] / "configs" / "accelerate" / "ddp_cpu.yaml"
ZERO2 = Path(__file__).parents[1] / "configs" / "accelerate" / "deepspeed_zero2.yaml"
ZERO3 = ZERO2.with_name("deepspeed_zero3.yaml")
FSDP2 = ZERO2.with_name("fsdp2.yaml")
needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason='needs deepspeed (pip install -e ".[deepspeed]")'
)
SCRIPT = Path(__file__).parent / "scripts" / "train_curve.py"


def test_labels_cover_completion_and_eos_only(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    ex = encode_sft(policy, "1+2=", "3")
    n_prompt = len(policy.encode_prompt("1+2="))
    assert ex["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:] == policy.encode_completion("3")
    batch = pad_right([ex, encode_sft(policy, "11+22=", "33")], policy.tokenizer.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE).all()


def test_sft_nll_is_mean_over_completion_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 1], [IGNORE, 2, IGNORE, IGNORE]])
    logp = torch.log_softmax(logits, -1)
    expected = -(logp[0, 1, 3] + logp[0, 2, 1] + logp[1, 0, 2]) / 3
    assert sft_nll(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_chunked_log_softmax_is_bitwise_one_log_softmax(monkeypatch):
    torch.manual_seed(0)
    labels = torch.randint(0, 50, (3, 40))
    labels[:, :7] = IGNORE

    def values_and_grad(chunk_elements: int) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(objectives, "CHUNK_ELEMENTS", chunk_elements)
        torch.manual_seed(1)
        logits = (torch.randn(3, 40, 50) * 3).requires_grad_()
        logp, _ = objectives.token_logprobs(logits, labels)
        (logp * torch.linspace(0, 1, logp.shape[1])).sum().backward()
        return logp.detach(), logits.grad

    one, chunked = values_and_grad(1 << 30), values_and_grad(3 * 50 * 7)  # one chunk; chunks of 7 positions
    assert torch.equal(one[0], chunked[0]) and torch.equal(one[1], chunked[1])
    logits = torch.randn(3, 40, 50)
    plain = torch.gather(torch.log_softmax(logits[:, :-1], -1), 2, labels[:, 1:].clamp(min=0).unsqueeze(-1))
    assert torch.equal(objectives.token_logprobs(logits, labels)[0], plain.squeeze(-1) * (labels[:, 1:] != IGNORE))


def test_training_lowers_loss_and_saves_a_loadable_checkpoint(tiny_model_dir, tmp_path):
    policy = load_policy(str(tiny_model_dir))
    records = [{"prompt": f"{i}+{i}=", "completion": f"x{2 * i}"} for i in range(10)]
    cfg = TrainingConfig(lr=5e-3, steps=30, batch_size=4, grad_accum=2, warmup_ratio=0.1, log_every=5)
    log = train_sft(policy, records, cfg, tmp_path / "ckpt", seed=0)
    assert len(log) == 30 and log[-1]["loss"] < 0.6 * log[0]["loss"]
    assert {"step", "loss", "lr", "grad_norm"} <= set(log[0])
    assert log[0]["lr"] < log[3]["lr"]  # warmup
    reloaded = load_policy(str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "train_log.jsonl").is_file()
    assert not (tmp_path / "ckpt.tmp").exists()
    for a, b in zip(policy.model.parameters(), reloaded.model.parameters()):
        assert torch.equal(a.cpu(), b)


def test_stages_of_one_process_may_differ_in_mixed_precision(tiny_model_dir):
    """accelerate keeps one process-wide state: a bf16 stage after an fp32 one used to raise on GPU."""
    records = [{"prompt": "1+1=", "completion": "x2"}] * 4
    for precision in ("no", "bf16"):
        cfg = TrainingConfig(lr=1e-3, steps=1, batch_size=2, mixed_precision=precision)
        assert len(train_sft(load_policy(str(tiny_model_dir)), records, cfg, None)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "pairs", "reward", "prm"])
@pytest.mark.parametrize(
    "launch_config",
    [DDP_CPU, pytest.param(ZERO2, marks=needs_deepspeed), pytest.param(ZERO3, marks=needs_deepspeed)],
    ids=["ddp", "zero2", "zero3"],
)
def test_two_process_ddp_matches_one_process(tiny_model_dir, tmp_path, kind, launch_config):
    """Same global batch (4 x 2 processes under DDP over gloo, or DeepSpeed ZeRO-2/3, vs 4 x 2 accumulation in one):
    the loss curves and the trained weights agree, the saved checkpoint (ZeRO-3: gathered from the shards) reloads,
    and the script saw a group of two (the launch's `--cpu` would start one)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    done = subprocess.run([sys.executable, SCRIPT, tiny_model_dir, one, kind, "4", "2"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr[-3000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch_config)]
    proc = subprocess.run(
        [*launch, SCRIPT, tiny_model_dir, two, kind, "4", "1"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["processes"], b["processes"]) == (1, 2)
    assert len(a["loss"]) == len(b["loss"]) == 8
    assert a["loss"][-1] < a["loss"][0]  # it learns
    assert max(abs(x - y) for x, y in zip(a["loss"], b["loss"])) < 1e-4, (a, b)
    assert b["checksum"] == pytest.approx(a["checksum"], rel=1e-5)
    assert b["reloaded"] == pytest.approx(b["checksum"], rel=1e-7)  # the checkpoint the group saved reloads


def test_a_launch_whose_processes_did_not_form_a_group_is_refused(monkeypatch):
    from selfalign.distributed import process_state
    from selfalign.errors import SelfAlignError

    process_state()  # the one-process group, as every earlier test in this process made it
    monkeypatch.setenv("WORLD_SIZE", "2")  # what a launch that forgot the process group leaves each process
    with pytest.raises(SelfAlignError, match="launched as one of 2 processes, but the process group has 1"):
        process_state()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launch_config", "config", "message"),
    [
        # GRPO samples from the policy every step, which under ZeRO-3 would gather every sharded weight each time
        pytest.param(ZERO3, "grpo.yaml", "DeepSpeed ZeRO-3 trains the offline trainers", marks=needs_deepspeed),
        # nothing gathers FSDP's shards for the checkpoint; on a CPU accelerate would train under DDP instead
        (FSDP2, "star.yaml", "FSDP is not supported"),
    ],
    ids=["zero3-online", "fsdp2"],
)
def test_a_launch_selfalign_cannot_train_under_is_refused(tmp_path, launch_config, config, message):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch_config)]
    run = [*launch, "-m", "selfalign.cli", "run", str(Path(__file__).parents[1] / "configs" / config)]
    small = ["params.rounds=1", "training.steps=2", "task.n_eval=8"]
    proc = subprocess.run([*run, "--out", str(tmp_path / "run"), *small], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"round-001/train: {message}" in proc.stderr
    assert "selfalign.errors" not in proc.stderr  # our error is a message, not a traceback
    assert not (tmp_path / "run" / "round-001" / "checkpoint").exists()
