"""Our preference objectives against TRL's trainers on the same tokens, model and reference (TRL is test-only)."""

from __future__ import annotations

import copy

import pytest
import torch

from selfalign.config import PreferenceConfig
from selfalign.training import objectives as obj
from selfalign.training.objectives import IGNORE
from selfalign.training.pairwise import concatenated_logps, preference_loss

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

PAIRS = [
    {"prompt": "c3b1+c8b6=", "chosen": "b1+6+0=07 c3+8+0=11", "rejected": "b1+6+0=08"},
    {"prompt": "a7+a5=", "chosen": "a7+5+0=12", "rejected": "a7+5+0=13 b"},
    {"prompt": "d9c9+d1c1=", "chosen": "c9+1+0=10 d9+1+1=11", "rejected": "c9+1+0=10 d9+1+1=12"},
    {"prompt": "b2+b2=", "chosen": "b2+2+0=04", "rejected": "b2+2+0=4"},
]


def _models(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ref = copy.deepcopy(policy)
    torch.manual_seed(1)
    with torch.no_grad():  # policy != reference, so log-ratios are far from zero
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return tok, policy, ref


def _trl_dpo_loss(tmp_path, tok, policy, ref, loss_type, beta, label_smoothing):
    args = trl.DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=len(PAIRS),
        loss_type=[loss_type],
        beta=beta,
        label_smoothing=label_smoothing,
        report_to=[],
        use_cpu=True,
        bf16=False,
    )
    trainer = trl.DPOTrainer(
        model=policy,
        ref_model=ref,
        args=args,
        train_dataset=datasets.Dataset.from_list(PAIRS),
        processing_class=tok,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    policy.eval()  # no dropout in either pass
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    return loss.item(), batch


@pytest.mark.parametrize(
    ("loss_type", "label_smoothing"),
    [("sigmoid", 0.0), ("robust", 0.2), ("ipo", 0.0)],
)
def test_dpo_losses_match_trl(tmp_path, tiny_model_dir, loss_type, label_smoothing):
    tok, policy, ref = _models(tiny_model_dir)
    beta = 0.3
    want, batch = _trl_dpo_loss(tmp_path, tok, policy, ref, loss_type, beta, label_smoothing)

    ours = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE),
    }
    with torch.no_grad():
        chosen, rejected, n_c, n_r = concatenated_logps(policy, ours)
        ref_c, ref_r, _, _ = concatenated_logps(ref, ours)
    cfg = PreferenceConfig(loss=loss_type, beta=beta, label_smoothing=label_smoothing)
    eps = torch.full_like(chosen, label_smoothing)
    got = preference_loss(cfg, chosen, rejected, ref_c, ref_r, n_c, n_r, eps).mean().item()
    assert abs(chosen - ref_c).max() > 0.1  # the comparison is not at the trivial log-ratio 0
    assert got == pytest.approx(want, abs=1e-5)


def test_reward_loss_with_margin_matches_trl(tmp_path, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    pairs = [dict(p, margin=m) for p, m in zip(PAIRS, [0.0, 1 / 3, 2 / 3, 1.0])]
    for p in pairs:
        p["chosen"], p["rejected"] = p["prompt"] + p["chosen"], p["prompt"] + p["rejected"]
        del p["prompt"]
    args = trl.RewardConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=len(pairs), report_to=[], use_cpu=True, bf16=False
    )
    trainer = trl.RewardTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(pairs), processing_class=tok
    )
    batch = next(iter(trainer.get_train_dataloader()))
    model.eval()
    with torch.no_grad():
        want = trainer.compute_loss(trainer.model, batch).item()
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    chosen, rejected = rewards.chunk(2)
    got = obj.bradley_terry_loss(chosen, rejected, batch["margin"]).mean().item()
    assert abs(batch["margin"]).max() > 0
    assert got == pytest.approx(want, abs=1e-5)


def test_cdpo_and_soft_labels_reduce_to_dpo():
    torch.manual_seed(0)
    c, r = torch.randn(16) * 3, torch.randn(16) * 3
    plain = obj.dpo_loss(c, r, 0.1)
    assert torch.allclose(obj.dpo_loss(c, r, 0.1, torch.zeros(16)), plain)
    # a per-pair epsilon equals the global-epsilon loss row by row
    eps = torch.rand(16) * 0.4
    rows = torch.stack([obj.dpo_loss(c[i : i + 1], r[i : i + 1], 0.1, float(eps[i])) for i in range(16)]).squeeze()
    assert torch.allclose(obj.dpo_loss(c, r, 0.1, eps), rows)
    # cDPO's optimum is finite: gradient zero where sigma(beta h) = 1 - eps
    h = torch.tensor([torch.logit(torch.tensor(0.9)).item() / 0.1], requires_grad=True)
    obj.dpo_loss(h, torch.zeros(1), 0.1, 0.1).sum().backward()
    assert abs(h.grad.item()) < 1e-6
    # robust DPO with epsilon 0 is DPO
    assert torch.allclose(obj.robust_dpo_loss(c, r, 0.1, 0.0), plain)
    with pytest.raises(ValueError, match="epsilon"):
        obj.robust_dpo_loss(c, r, 0.1, 0.5)


def test_dpo_nll_adds_length_normalised_chosen_nll():
    c, r = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.0])
    logps, n = torch.tensor([-10.0, -4.0]), torch.tensor([5, 2])
    got = obj.dpo_nll_loss(c, r, logps, n, beta=0.5, alpha=2.0)
    assert torch.allclose(got, obj.dpo_loss(c, r, 0.5) + 2.0 * torch.tensor([2.0, 2.0]))


def test_soft_label_bradley_terry_is_the_cross_entropy_on_p_chosen():
    torch.manual_seed(0)
    c, r, m = torch.randn(8), torch.randn(8), torch.rand(8)
    eps = torch.rand(8) * 0.5
    assert torch.allclose(obj.bradley_terry_loss(c, r, m, 0.0), obj.bradley_terry_loss(c, r, m))
    p = torch.sigmoid(c - r - m)  # the RM's P(chosen better); the soft target is 1 - eps
    want = -((1 - eps) * p.log() + eps * (1 - p).log())
    assert torch.allclose(obj.bradley_terry_loss(c, r, m, eps), want, atol=1e-6)
    # the two orders of a pair with target 1 - eps and eps give the same loss
    assert torch.allclose(obj.bradley_terry_loss(c, r, None, eps), obj.bradley_terry_loss(r, c, None, 1 - eps))
