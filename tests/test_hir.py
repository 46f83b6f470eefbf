"""HIR: the loss against the official offline trainer's computation, the sub-output sampler, the recipe end to end."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.distributions import Categorical

from selfalign.batching import IGNORE
from selfalign.cli import main
from selfalign.records import read_jsonl
from selfalign.training.hir import sub_output
from selfalign.training.objectives import hir_loss


def official(pos_logits: torch.Tensor, neg_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """tianjunz/HIR offline_trainer.py's loss, line for line (one output, seq2seq-aligned logits [1, L, V])."""
    from transformers.trainer_pt_utils import LabelSmoother

    epsilon = 0.2
    loss = LabelSmoother(epsilon=epsilon)({"logits": pos_logits}, labels)
    bs, seq_len, dim = pos_logits.shape
    pos_prob = nn.CrossEntropyLoss(ignore_index=-100, reduction="none")(pos_logits.reshape(-1, dim), labels.reshape(-1))
    neg_prob = nn.CrossEntropyLoss(ignore_index=-100, reduction="none")(neg_logits.reshape(-1, dim), labels.reshape(-1))
    pos_prob = (-pos_prob.reshape(bs, seq_len).mean(-1)).exp()
    neg_prob = (-neg_prob.reshape(bs, seq_len).mean(-1)).exp()
    pos_log_prob = -torch.log(pos_prob / (pos_prob + neg_prob) + 1e-8)
    neg_log_prob = -torch.log(neg_prob / (pos_prob + neg_prob) + 1e-8)
    loss = loss + (1 - epsilon) * pos_log_prob + epsilon * neg_log_prob
    entropy = Categorical(logits=pos_logits).entropy().mean()
    return (loss - 0.001 * entropy).squeeze()


def causal(prompt_len: int, out: torch.Tensor, vocab: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal-LM logits and labels for a prompt of `prompt_len` tokens then the output `out`."""
    length = prompt_len + len(out)
    logits = torch.randn(1, length, vocab, generator=gen, requires_grad=True)
    labels = torch.tensor([[IGNORE] * prompt_len + out.tolist()])
    return logits, labels


def test_hir_loss_and_gradient_equal_the_official_code():
    gen = torch.Generator().manual_seed(0)
    vocab, out = 11, torch.tensor([3, 7, 1, 2, 9])
    pos, pos_labels = causal(4, out, vocab, gen)  # "correct <prompt>"
    neg, neg_labels = causal(6, out, vocab, gen)  # the opposite instruction is longer
    ours, metrics = hir_loss(pos, pos_labels, neg, neg_labels)
    # the official code's logits are the ones predicting each output token
    theirs = official(pos[:, 3:-1], neg[:, 5:-1], out[None])
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    g_ours = torch.autograd.grad(ours, [pos, neg])
    g_theirs = torch.autograd.grad(official(pos[:, 3:-1], neg[:, 5:-1], out[None]), [pos, neg])
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert set(metrics) == {"nll", "contrast", "entropy"}


def test_hir_loss_of_a_batch_is_the_mean_of_the_official_losses_of_equal_length_outputs():
    gen = torch.Generator().manual_seed(1)
    outs = [torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])]
    rows = [(causal(2, o, 7, gen), causal(3, o, 7, gen)) for o in outs]
    # pad the negatives to one width on the right, as the collator does
    pos = torch.cat([r[0][0] for r in rows])
    pos_labels = torch.cat([r[0][1] for r in rows])
    neg = torch.cat([r[1][0] for r in rows])
    neg_labels = torch.cat([r[1][1] for r in rows])
    ours, _ = hir_loss(pos, pos_labels, neg, neg_labels)
    theirs = [official(p[:, 1:-1], n[:, 2:-1], o[None]) for ((p, _), (n, _)), o in zip(rows, outs)]
    assert ours.item() == pytest.approx(torch.stack(theirs).mean().item(), rel=1e-5)


def test_sub_output_spans_follow_the_official_sampler():
    rng = random.Random(0)
    assert sub_output(3, rng) == (0, 3) and sub_output(1, rng) == (0, 1)
    seen = {sub_output(9, rng) for _ in range(2000)}
    assert seen == {(s, e) for s in (0, 2, 4) for e in range(s + 1, 10, 2)}  # even starts, odd span lengths


def test_hir_recipe_end_to_end(tmp_path):
    cfg = tmp_path / "hir.yaml"
    cfg.write_text("recipe: hir\nseed: 0\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    small = ["task.train_digits=[3]", "task.eval_digits=[3]", "task.n_train=16", "task.n_eval=4"]
    small += ["sampling.temperature=1.0", "sampling.max_new_tokens=40", "training.steps=3", "training.batch_size=8"]
    args = ["run", str(cfg), "--out", str(out), *small, "params.rounds=2"]
    assert main(args) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[1]["train_records"] == 16
    train = read_jsonl(out / "round-001" / "train.jsonl")
    samples = {r["id"]: r for r in read_jsonl(out / "round-001" / "samples.jsonl")}
    for r in train:  # every sample is kept, under the instruction it followed
        correct = samples[r["source"]]["correct"]
        plain = samples[r["source"]]["prompt"]
        assert (r["prompt"], r["negative_prompt"]) == (
            (plain, f"wrong {plain}") if correct else (f"wrong {plain}", plain)
        )
    evals = read_jsonl(out / "round-002" / "eval.jsonl")
    assert all(not r["hinted"] for r in evals)
    assert main([*args, "--resume"]) == 0


def test_label_smoothing_can_be_set_apart_from_the_contrastive_weight():
    gen = torch.Generator().manual_seed(2)
    out = torch.tensor([1, 2, 3])
    (pos, pl), (neg, nl) = causal(2, out, 7, gen), causal(2, out, 7, gen)
    official_loss, _ = hir_loss(pos, pl, neg, nl)
    assert hir_loss(pos, pl, neg, nl, label_smoothing=0.2)[0].item() == official_loss.item()
    plain, m = hir_loss(pos, pl, neg, nl, label_smoothing=0.0)
    expected = m["nll"] + m["contrast"] - 1e-3 * m["entropy"]
    assert plain.item() == pytest.approx(expected.item(), rel=1e-6)
