"""Training that resumes inside a stage: step checkpoints for fixed records and for batches made during training
(rollout -> score -> update), each resumed run equal to an uninterrupted one; and the NaN guard."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from selfalign.batching import Batch, encode_sft, model_inputs, pad_right
from selfalign.config import TrainingConfig
from selfalign.generation import SamplingParams, make_sampler
from selfalign.models import Policy, load
from selfalign.tasks.arithmetic import ArithmeticTask
from selfalign.training.objectives import sft_nll
from selfalign.training.trainer import Records, TrainingDiverged, latest_step_checkpoint, train_and_save

CFG = TrainingConfig(lr=3e-3, steps=6, batch_size=4, grad_accum=2, warmup_ratio=0.2, save_every=2)
RECORDS = [{"prompt": f"{i}+{i}=", "completion": f"x{2 * i}"} for i in range(12)]


class Interrupt(Exception):
    pass


def sft_loss(model: torch.nn.Module, batch: Batch, stop_at: int | None = None, calls: list | None = None):
    if calls is not None:
        calls.append(1)
        if stop_at is not None and len(calls) >= stop_at:
            raise Interrupt  # as if the process were killed here
    return sft_nll(model(**model_inputs(batch)).logits, batch["labels"]), {}


def fixed_records(policy: Policy) -> Records:
    data = [encode_sft(policy, r["prompt"], r["completion"]) for r in RECORDS]
    return Records(data, partial(pad_right, pad_id=policy.tokenizer.pad_token_id), [len(x["input_ids"]) for x in data])


class SelfDistillation:
    """An online source: each micro-batch is the current model's own samples on arithmetic prompts, graded by the
    checker, and the correct ones (else all) become SFT targets. Sampling is seeded by (step, micro)."""

    def __init__(self, policy: Policy):
        self.policy, self.task = policy, ArithmeticTask()
        self.problems = self.task.train_problems(1, seed=0)[:4]
        self.sampler = make_sampler("hf", policy, batch_size=16)

    def next_batch(self, step: int, micro: int) -> Batch:
        params = SamplingParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=1000 * step + micro)
        gens = self.sampler.generate([p.prompt for p in self.problems], params, desc="rollout")
        graded = [(self.problems[g.prompt_index], g.text) for g in gens]
        kept = [(p, t) for p, t in graded if self.task.check(p, t).correct] or graded
        rows = [encode_sft(self.policy, p.prompt, t) for p, t in kept]
        return pad_right(rows, self.policy.tokenizer.pad_token_id)


def train(model_dir, out, source_of, stop_at=None, cfg=CFG):
    policy = load("policy", str(model_dir), dtype="float32")
    loss = partial(sft_loss, stop_at=stop_at, calls=[])
    return policy, train_and_save(policy, source_of(policy), loss, cfg, out, seed=0, steps=cfg.steps, desc="t")


@pytest.mark.parametrize("source_of", [fixed_records, SelfDistillation], ids=["records", "online"])
def test_interrupted_training_resumes_from_its_last_step_checkpoint(tiny_model_dir, tmp_path, source_of):
    whole, whole_log = train(tiny_model_dir, tmp_path / "whole", source_of)
    assert not (tmp_path / "whole.steps").exists()  # step checkpoints are removed once the model is saved

    with pytest.raises(Interrupt):  # micro-batch 9 is step 5: steps 1-4 done, step-4 checkpoint saved
        train(tiny_model_dir, tmp_path / "cut", source_of, stop_at=9)
    last = latest_step_checkpoint(tmp_path / "cut.steps")
    assert last is not None and last.name == "step-000004"
    resumed, resumed_log = train(tiny_model_dir, tmp_path / "cut", source_of)

    assert resumed_log == whole_log and len(resumed_log) == CFG.steps
    for (name, a), (_, b) in zip(whole.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "cut.steps").exists()


def test_a_half_written_step_checkpoint_is_ignored(tiny_model_dir, tmp_path):
    (tmp_path / "cut.steps" / "step-000004.tmp").mkdir(parents=True)  # a save killed mid-write
    assert latest_step_checkpoint(tmp_path / "cut.steps") is None
    _, log = train(tiny_model_dir, tmp_path / "cut", fixed_records)
    assert len(log) == CFG.steps


def test_divergence_stops_with_a_clear_error_and_saves_nothing(tiny_model_dir, tmp_path):
    cfg = CFG.model_copy(update={"lr": 1e30, "save_every": None})
    with pytest.raises(TrainingDiverged, match="training diverged at step"):
        train(tiny_model_dir, tmp_path / "ckpt", fixed_records, cfg=cfg)
    assert not (tmp_path / "ckpt").exists()
