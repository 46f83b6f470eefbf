"""Training objectives as pure functions on tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from selfalign.batching import IGNORE

CHUNK_ELEMENTS = 1 << 24  # log-softmax this many logits at a time (64 MB in fp32)


def _label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, labels.unsqueeze(-1)).squeeze(-1)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label) for next-token prediction, and the mask of supervised positions.

    logits [B, T, V] and labels [B, T] are aligned as the model returns them; IGNORE marks
    positions (prompt, padding) that are not scored. The log-softmax runs over chunks of positions,
    recomputed in the backward pass, so no second [B, T, V] tensor is kept (a real vocabulary makes
    it the largest tensor of a step); the values and gradients are bitwise those of one log-softmax.
    """
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    n = max(1, CHUNK_ELEMENTS // (logits.shape[0] * logits.shape[2]))
    chunks = zip(logits.split(n, dim=1), labels.clamp(min=0).split(n, dim=1))
    logp = torch.cat([checkpoint(_label_logprobs, x, y, use_reentrant=False) for x, y in chunks], dim=1)
    return logp * mask, mask


def sft_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over completion tokens in the batch."""
    logp, mask = token_logprobs(logits, labels)
    return -logp.sum() / mask.sum().clamp(min=1)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-prob per sequence [B] and the number of completion tokens [B]."""
    logp, mask = token_logprobs(logits, labels)
    return logp.sum(-1), mask.sum(-1)


def implicit_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward beta [log pi(y|x) - log pi_ref(y|x)] on summed completion log-probs."""
    return beta * (policy_logps - ref_logps)


# Preference objectives. Inputs are per-pair tensors [B]: log-ratios log pi(y)/pi_ref(y) summed over
# completion tokens, rewards, or margins. Each returns the per-pair loss [B]; trainers take the mean.


def dpo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """DPO (Rafailov et al. 2023); with a global epsilon it is cDPO, with a per-pair tensor the soft-label form.

    L = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h), h = chosen - rejected log-ratio.
    eps_i = 1 - p_i turns a labeller's preference probability p_i into a soft label (RLAIF, CAI, SPA).
    """
    h = beta * (chosen_logratios - rejected_logratios)
    return -(1 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)


def robust_dpo_loss(
    chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float = 0.1, epsilon: float = 0.1
) -> torch.Tensor:
    """Robust DPO (Chowdhury et al. 2024): unbiased under labels flipped with probability epsilon < 0.5."""
    if not 0 <= epsilon < 0.5:
        raise ValueError(f"robust DPO needs 0 <= epsilon < 0.5, got {epsilon}")
    h = beta * (chosen_logratios - rejected_logratios)
    return (-(1 - epsilon) * F.logsigmoid(h) + epsilon * F.logsigmoid(-h)) / (1 - 2 * epsilon)


def ipo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    tau: float = 0.1,
) -> torch.Tensor:
    """IPO (Azar et al. 2023): (h - 1/(2 tau))^2 on log-ratios averaged over completion tokens only."""
    h = chosen_logratios / chosen_tokens.clamp(min=1) - rejected_logratios / rejected_tokens.clamp(min=1)
    return (h - 1 / (2 * tau)) ** 2


def dpo_nll_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    beta: float = 0.1,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Iterative RPO (Pang et al. 2024): DPO plus alpha x the length-normalised NLL of the chosen response."""
    nll = -chosen_logps / chosen_tokens.clamp(min=1)
    return dpo_loss(chosen_logratios, rejected_logratios, beta) + alpha * nll


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | None = None,
    epsilon: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Reward-model loss -(1 - eps) log sigma(d) - eps log sigma(-d), d = r_c - r_r - m: m is the Llama-2 margin for
    the pair's label strength, eps its soft label (RLAIF's distilled RM: cross-entropy on P(chosen) = 1 - eps)."""
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    return -(1 - epsilon) * F.logsigmoid(diff) - epsilon * F.logsigmoid(-diff)


def outcome_loss(logits: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """[B] ORM loss: binary cross-entropy of the final-token logit against final-answer correctness
    (Cobbe et al. 2021; Lightman et al. 2023's ORM)."""
    return F.binary_cross_entropy_with_logits(logits, correct.float(), reduction="none")


def step_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean PRM loss over labelled step positions: cross-entropy of the per-token class logits [B, T, C]
    against step labels [B, T], which are IGNORE everywhere but the last token of each step (TRL PRMTrainer)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


def confidence_coef(step_frac: float, aux_coef: float = 0.5, warmup_frac: float = 0.1) -> float:
    """The weight alpha of the student's own hardened predictions at this point of training, as the official code
    (openai/weak-to-strong `logconf_loss_fn`) computes it: step_frac * aux_coef during the first `warmup_frac` of
    training, then aux_coef (so it ramps to warmup_frac * aux_coef and jumps)."""
    return aux_coef * (1.0 if step_frac > warmup_frac else step_frac)


def weak_to_strong_loss(logits: torch.Tensor, weak: torch.Tensor, coef: float = 0.0) -> torch.Tensor:
    """[B] weak-to-strong loss (Burns et al. 2023) on two-class logits [B, 2] and weak soft labels [B, 2].

    coef = 0: cross-entropy against the weak labels (naive fine-tuning). coef > 0: the auxiliary confidence loss
    CE(f(x), (1 - alpha) f_w(x) + alpha f_t(x)), where f_t is the student's prediction hardened at the threshold
    t that makes the batch's share of class 1 equal the weak labels' mean (the official code's quantile of
    P(class 0)), treated as a constant target.
    """
    logits, weak = logits.float(), weak.float()
    if coef:
        p0 = logits.softmax(-1)[:, 0].detach()
        t = torch.quantile(p0, weak.mean(0)[1])
        hard = torch.stack([p0 >= t, p0 < t], dim=1).float()
        weak = (1 - coef) * weak + coef * hard
    return F.cross_entropy(logits, weak, reduction="none")


def _token_terms(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B, T, 3]: log p(label), the mean log-prob over the vocabulary, and the entropy, per position."""
    logp = F.log_softmax(logits.float(), dim=-1)
    label = torch.gather(logp, 2, labels.unsqueeze(-1)).squeeze(-1)
    return torch.stack([label, logp.mean(-1), -(logp.exp() * logp).sum(-1)], dim=-1)


def hir_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    negative_logits: torch.Tensor,
    negative_labels: torch.Tensor,
    epsilon: float = 0.2,
    entropy_coef: float = 1e-3,
    label_smoothing: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """HIR (Zhang et al. 2023) as the official offline trainer computes it (tianjunz/HIR `offline_trainer.py`).

    logits [B, T, V] and labels [B, T]: the output under its hindsight instruction, labels marking the
    (sub-)output being learned, aligned as the model returns them; negative_*: the same output under the opposite
    instruction.

        L = (1 - eps) NLL + eps * mean_v(-log p_v)                      (HF LabelSmoother, eps = 0.2)
            + (1 - eps) [-log P+/(P+ + P-)] + eps [-log P-/(P+ + P-)]   (P = exp(mean token log-lik) per output)
            - 0.001 * mean entropy
    The official code runs one output per device (its contrastive term is that output's); here it is the batch
    mean. `label_smoothing` replaces eps in the first line only (the official uses eps for both). Chunked over
    positions like `token_logprobs`, recomputed in the backward pass."""
    smoothing = epsilon if label_smoothing is None else label_smoothing
    pos_logits, pos_labels = logits[:, :-1], labels[:, 1:]
    mask = (pos_labels != IGNORE).float()
    active = mask.sum().clamp(min=1)
    n = max(1, CHUNK_ELEMENTS // (pos_logits.shape[0] * pos_logits.shape[2]))
    chunks = zip(pos_logits.split(n, dim=1), pos_labels.clamp(min=0).split(n, dim=1))
    pos = torch.cat([checkpoint(_token_terms, a, b, use_reentrant=False) for a, b in chunks], dim=1) * mask[..., None]
    neg, neg_mask = token_logprobs(negative_logits, negative_labels)
    nll, smooth, entropy = (-pos[..., 0].sum() / active, -pos[..., 1].sum() / active, pos[..., 2].sum() / active)
    p_pos = (pos[..., 0].sum(-1) / mask.sum(-1).clamp(min=1)).exp()
    p_neg = (neg.sum(-1) / neg_mask.sum(-1).clamp(min=1)).exp()
    contrast = (1 - epsilon) * -torch.log(p_pos / (p_pos + p_neg) + 1e-8)
    contrast = contrast + epsilon * -torch.log(p_neg / (p_pos + p_neg) + 1e-8)
    loss = (1 - smoothing) * nll + smoothing * smooth + contrast.mean() - entropy_coef * entropy
    return loss, {"nll": nll.detach(), "contrast": contrast.mean().detach(), "entropy": entropy.detach()}
