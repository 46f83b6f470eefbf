"""The pairwise trainer's reference handling: precomputed, frozen copy, and LoRA with adapters disabled."""

from __future__ import annotations

import types

import pytest
import torch

from selfalign.batching import collate_pairs, encode_pair
from selfalign.config import LoraConfig, PreferenceConfig, TrainingConfig
from selfalign.models.loading import load_policy
from selfalign.training import pairwise
from selfalign.training.pairwise import concatenated_logps, train_pairwise

PAIRS = [
    {"prompt": "a1+a2=", "chosen": "a1+2+0=03", "rejected": "a1+2+0=04"},
    {"prompt": "b5+b5=", "chosen": "b5+5+0=10", "rejected": "b5+5"},
    {"prompt": "c9+c1=", "chosen": "c9+1+0=10", "rejected": "c9+1+0=11", "epsilon": 0.2},
    {"prompt": "d3+d3=", "chosen": "d3+3+0=06", "rejected": "d3+3+0=07"},
]
TRAIN = TrainingConfig(lr=1e-2, steps=3, batch_size=4, warmup_ratio=0.0, scheduler="constant_with_warmup")


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_precomputed_and_frozen_reference_train_identically(tiny_model_dir, loss):
    logs = []
    for reference in ("precompute", "model"):
        policy = load_policy(str(tiny_model_dir), dtype="float32")
        logs.append(train_pairwise(policy, PAIRS, TRAIN, None, pref=PreferenceConfig(loss=loss, reference=reference)))
    for a, b in zip(*logs):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert logs[0][0]["rewards/margin"] == pytest.approx(0, abs=1e-6)  # policy == reference at step 1
    assert logs[0][-1]["rewards/margin"] != pytest.approx(0, abs=1e-4)  # and it learns


def test_lora_reference_is_the_base_without_a_copy(tiny_model_dir, monkeypatch):
    base = load_policy(str(tiny_model_dir), dtype="float32")
    policy = load_policy(str(tiny_model_dir), lora=LoraConfig(r=4, alpha=8), dtype="float32")
    with torch.no_grad():  # adapters that change the output, so base and adapted differ
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    data = [encode_pair(policy, p) for p in PAIRS]
    batch = collate_pairs(data, policy.tokenizer.pad_token_id)
    with torch.no_grad():
        want = concatenated_logps(base.model, batch)[:2]
        adapted = concatenated_logps(policy.model, batch)[:2]
        with pairwise.reference_of(policy.model) as ref:
            got = concatenated_logps(ref, batch)[:2]
    assert torch.allclose(got[0], want[0], atol=1e-5) and torch.allclose(got[1], want[1], atol=1e-5)
    assert not torch.allclose(adapted[0], want[0], atol=1e-3)

    def no_copies(*a, **k):
        raise AssertionError("the LoRA reference must not copy the model")

    monkeypatch.setattr(pairwise, "copy", types.SimpleNamespace(deepcopy=no_copies))
    log = train_pairwise(policy, PAIRS, TRAIN, None, pref=PreferenceConfig(reference="model"))
    assert len(log) == 3


def test_soft_label_epsilon_reaches_the_loss(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir), dtype="float32")
    data = [{**encode_pair(policy, p), "epsilon": p.get("epsilon")} for p in PAIRS]
    batch = collate_pairs(data, policy.tokenizer.pad_token_id, defaults={"epsilon": 0.05})
    assert batch["epsilon"].tolist() == pytest.approx([0.05, 0.05, 0.2, 0.05])
    assert batch["input_ids"].shape[0] == 8  # chosen and rejected in one forward pass
