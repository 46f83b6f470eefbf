"""The chunked full-vocabulary log-probs equal a plain log_softmax + gather: the same values, the same gradients
(to an ulp: log_softmax's own backward rounds once less at the label, a fused multiply-add)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from selfalign.training import objectives as obj
from selfalign.training.objectives import IGNORE


def plain_token_logprobs(logits, labels):  # the pre-chunking implementation
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    logp = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def _inputs(dtype=torch.float32, B=3, T=7, V=50):
    g = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(B, T, V, generator=g)).to(dtype).requires_grad_()
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :3] = IGNORE  # a prompt
    labels[-1, -2:] = IGNORE  # padding
    return logits, labels


@pytest.mark.parametrize("chunk", [1, 50, 3 * 50 * 2, obj.LOGPROB_CHUNK])  # 1 and 2 positions per chunk, all
def test_values_and_gradients_match_log_softmax(chunk):
    logits, labels = _inputs()
    want, want_mask = plain_token_logprobs(logits, labels)
    (want_grad,) = torch.autograd.grad((want * torch.arange(want.numel()).view_as(want)).sum(), logits)
    got, mask = obj.token_logprobs(logits, labels, chunk=chunk)
    (got_grad,) = torch.autograd.grad((got * torch.arange(got.numel()).view_as(got)).sum(), logits)
    assert torch.equal(mask, want_mask)
    assert torch.equal(got, want)
    assert torch.allclose(got_grad, want_grad, atol=1e-6, rtol=1e-6)
    assert torch.all(got_grad[0, :2] == 0)  # positions predicting IGNORE labels get no gradient


def test_gradcheck_in_double():
    logits, labels = _inputs(torch.float64, B=2, T=4, V=6)
    assert torch.autograd.gradcheck(lambda x: obj.token_logprobs(x, labels, chunk=6)[0], (logits,))


def test_half_precision_logits_get_fp32_logprobs_and_their_own_dtype_grads():
    logits, labels = _inputs(torch.bfloat16)
    want, _ = plain_token_logprobs(logits, labels)
    got, _ = obj.token_logprobs(logits, labels, chunk=100)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    (grad,) = torch.autograd.grad(got.sum(), logits)
    (want_grad,) = torch.autograd.grad(want.sum(), logits)
    assert grad.dtype == torch.bfloat16 and torch.allclose(grad.float(), want_grad.float(), atol=1e-2)


def test_sequence_logprobs_and_sft_nll_are_unchanged():
    logits, labels = _inputs()
    logp, mask = plain_token_logprobs(logits, labels)
    seq, n = obj.sequence_logprobs(logits, labels)
    assert torch.equal(seq, logp.sum(-1)) and torch.equal(n, mask.sum(-1))
    assert torch.equal(obj.sft_nll(logits, labels), -logp.sum() / mask.sum())
