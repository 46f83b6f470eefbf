"""Online RL objectives (GRPO, RLOO, PPO) as pure functions on tensors.

Layouts: per-sequence tensors are [B]; per-token tensors are [B, T] over completion tokens only, right-padded, with
`mask` [B, T] (1 on completion tokens, 0 on padding). Group methods lay the B = G x n completions out group by group:
rows [g*n, (g+1)*n) are the n samples o_1..o_n of prompt q_g. Log-probs are log pi(o_t | q, o_<t) per token: `logps`
from the policy being trained (pi_theta), `old_logps` from the policy that sampled (pi_theta_old), `ref_logps` from
the frozen reference (pi_ref). GRPO and RLOO follow TRL 1.16 (`GRPOTrainer`, `RLOOTrainer`) exactly; PPO follows the
InstructGPT/Llama 2 recipe as TRL's (since removed) `PPOTrainer` implemented it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Tensor = torch.Tensor
ScaleRewards = Literal["group", "batch", "none"]
LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
STD_EPS = 1e-4  # TRL adds this to the reward std before dividing
WHITEN_EPS = 1e-8  # TRL's PPO `masked_whiten`


def _nanstd(x: Tensor, dim: int | None = None) -> Tensor:
    """Bessel-corrected std ignoring NaNs; NaN where fewer than two values (TRL's `nanstd`)."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim)
    count = (~torch.isnan(x)).sum(dim=dim)
    return torch.sqrt(torch.where(count > 1, var * count / (count - 1), torch.nan))


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over positions where `mask` is 1 (along `dim`, or all), 0 when nothing is masked in."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


# Advantages. Rewards r_i [B] may be NaN for completions no reward function could score: they are left out of every
# baseline and statistic, and their advantage is 0 (TRL 1.16).


def grpo_advantages(rewards: Tensor, group_size: int, scale_rewards: ScaleRewards = "group") -> Tensor:
    """GRPO outcome advantages [B] (Shao et al. 2024, eq. 3): A_i = (r_i - mean(r_group)) / (std + 1e-4).

    `scale_rewards` as TRL: "group" divides by the group's std (the paper), "batch" by the std of all B rewards
    (PPO Lite; the mean subtracted is still the group's), "none" does not divide (Dr. GRPO). Stds are unbiased.
    """
    grouped = rewards.view(-1, group_size)
    advantages = rewards - torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    if scale_rewards == "group":
        std = _nanstd(grouped, dim=1).repeat_interleave(group_size) if group_size > 1 else torch.zeros_like(rewards)
    elif scale_rewards == "batch":
        std = _nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', not {scale_rewards!r}")
    if scale_rewards != "none":
        advantages = advantages / (std + STD_EPS)
    return torch.nan_to_num(advantages, nan=0.0)


def process_advantages(
    step_rewards: list[list[float]], step_ends: list[list[int]], group_size: int, width: int
) -> Tensor:
    """GRPO with process supervision (Shao et al. 2024, sec. 4.1.3) [B, width]: a group's step rewards are normalised
    by the mean and std of all step rewards of the group's n responses, r~ = (r - mean) / (std + 1e-4), and token t of
    o_i gets the sum of r~ over the steps of o_i that end at or after t: A_{i,t} = sum_{index(j) >= t} r~_i^index(j).

    `step_ends[i][k]` is the position (in the [B, width] per-token layout) of the last token of step k of o_i, in
    increasing order. Tokens after the last step end (the EOS) get 0, as does every token of a stepless response.
    """
    out = torch.zeros(len(step_rewards), width)
    for g in range(0, len(step_rewards), group_size):
        flat = torch.tensor([r for rs in step_rewards[g : g + group_size] for r in rs], dtype=torch.float32)
        if flat.numel() == 0:
            continue
        mean, std = flat.mean(), _nanstd(flat) if flat.numel() > 1 else torch.tensor(0.0)
        for i in range(g, min(g + group_size, len(step_rewards))):
            normalised = (torch.tensor(step_rewards[i], dtype=torch.float32) - mean) / (torch.nan_to_num(std) + STD_EPS)
            for end, r in zip(step_ends[i], normalised):
                out[i, : end + 1] += r  # every token up to this step's end gets this step's reward
    return out


def rloo_advantages(rewards: Tensor, group_size: int, normalize: bool = False) -> Tensor:
    """RLOO advantages [B] (Ahmadian et al. 2024, eq. 5): r_i minus the mean reward of the other n-1 samples.

    `normalize` then whitens over the whole batch, (A - mean) / (std + 1e-4), as TRL's `normalize_advantages`.
    """
    if group_size > 1:
        grouped = rewards.view(-1, group_size)
        count = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
        baseline = (torch.nansum(grouped, dim=1, keepdim=True) - grouped) / (count - 1)
        advantages = rewards - baseline.view(-1)
    else:
        advantages = torch.zeros_like(rewards)
    if normalize:
        advantages = (advantages - torch.nanmean(advantages)) / (_nanstd(advantages) + STD_EPS)
    return torch.nan_to_num(advantages, nan=0.0)


def rloo_kl_rewards(rewards: Tensor, old_logps: Tensor, ref_logps: Tensor, mask: Tensor, beta: float) -> Tensor:
    """RLOO's KL-penalised sequence reward [B]: r - beta * sum_t k1_t, k1 from the sampling policy (TRL 1.16)."""
    return rewards - beta * (kl_k1(old_logps, ref_logps) * mask).sum(-1)


# KL estimators (Schulman, "Approximating KL divergence", 2020) of KL(pi || pi_ref), per token [B, T].


def kl_k1(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """k1 = log pi/pi_ref: unbiased, high variance, can be negative."""
    return logps - ref_logps


def kl_k3(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """k3 = pi_ref/pi - log(pi_ref/pi) - 1: unbiased, >= 0, lower variance (GRPO's D_KL, Shao et al. eq. 4)."""
    log_ratio = ref_logps - logps
    return torch.exp(log_ratio) - log_ratio - 1


# Policy losses. Each returns (scalar loss, metrics); metric names are TRL's.


def _clip_terms(ratio: Tensor, advantages: Tensor, eps_low: float, eps_high: float) -> tuple[Tensor, dict]:
    """-min(rho A, clip(rho, 1-eps_low, 1+eps_high) A) and the low/high/region clip indicators."""
    per_item = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * advantages)
    low = ((ratio < 1 - eps_low) & (advantages < 0)).float()
    high = ((ratio > 1 + eps_high) & (advantages > 0)).float()
    return per_item, {"clip_ratio/low_mean": low, "clip_ratio/high_mean": high, "clip_ratio/region_mean": low + high}


def grpo_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss_type: LossType = "dapo",
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    ref_logps: Tensor | None = None,
    max_completion_length: int | None = None,
    num_items_in_batch: float | Tensor | None = None,
    kl_ratio_correction: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped-surrogate GRPO loss (Shao et al. 2024, eq. 3), token-level ratio rho_t = pi_theta/pi_theta_old.

    Per token: -min(rho_t A_i, clip(rho_t, 1-epsilon, 1+epsilon_high) A_i) + beta * k3_t, with A_i [B] (or [B, T])
    broadcast over the tokens of o_i. `loss_type` aggregates the masked per-token losses as TRL 1.16:
    "grpo" = mean over sequences of the per-sequence token mean (1/G sum_i 1/|o_i| sum_t, the paper);
    "bnpo" = sum / tokens in this batch; "dr_grpo" = sum / (B * max_completion_length) (Dr. GRPO's constant);
    "dapo" = sum / `num_items_in_batch`, the token count of the whole generation batch (TRL rescales it to one
    accumulation window; default: the tokens of this batch, where dapo equals bnpo). No gradient-accumulation
    scaling is applied (TRL divides grpo/bnpo/dr_grpo by the accumulation steps in train mode).
    `kl_ratio_correction` multiplies k3_t by rho_t (with its gradient), making the KL gradient the unbiased
    reverse-KL gradient off-policy (DeepSeek-V3.2); TRL 1.16's default (`use_bias_correction_kl=True`).
    Metrics: clip fractions (token means over the mask) and, when beta != 0, the mean (corrected) k3 "kl".
    """
    mask = mask.to(logps.dtype)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logps - old_logps)
    eps_high = epsilon if epsilon_high is None else epsilon_high
    per_token, clipped = _clip_terms(ratio, advantages, epsilon, eps_high)
    metrics = {name: masked_mean(flag, mask) for name, flag in clipped.items()}
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs ref_logps")
        kl = kl_k3(logps, ref_logps) * (ratio if kl_ratio_correction else 1.0)
        per_token = per_token + beta * kl
        metrics["kl"] = masked_mean(kl.detach(), mask)
    total = per_token * mask
    if loss_type == "grpo":
        loss = (total.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = total.sum() / mask.sum().clamp(min=1.0)
    elif loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("dr_grpo needs max_completion_length")
        loss = total.sum() / (total.size(0) * max_completion_length)
    elif loss_type == "dapo":
        n = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch, dtype=logps.dtype)
        loss = total.sum() / n.clamp(min=1.0)
    else:
        raise ValueError(f"loss_type must be 'grpo', 'bnpo', 'dr_grpo' or 'dapo', not {loss_type!r}")
    return loss, metrics


def rloo_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """RLOO's clipped loss as TRL 1.16: one ratio per sequence, rho_i = exp(sum_t log pi_theta - sum_t log pi_old).

    Loss = mean_i -min(rho_i A_i, clip(rho_i, 1-epsilon, 1+epsilon_high) A_i); the KL, if any, is in the reward
    (`rloo_kl_rewards`). Metrics: clip fractions over sequences.
    """
    mask = mask.to(logps.dtype)
    ratio = torch.exp((logps * mask).sum(1) - (old_logps * mask).sum(1))
    per_seq, clipped = _clip_terms(ratio, advantages, epsilon, epsilon if epsilon_high is None else epsilon_high)
    return per_seq.mean(), {name: flag.mean() for name, flag in clipped.items()}


# Rows whose advantage is 0 everywhere (a group all right or all wrong) add exactly 0 to the clipped surrogate and to
# its gradient, whatever the ratio; without a KL term in the loss they need no forward or backward pass.


def rows_with_signal(advantages: Tensor) -> Tensor:
    """Rows [B] (bool) of advantages [B] or [B, T] with a non-zero entry. With none, the first row stands in, so the
    update still runs its forward, backward and optimizer step (on a zero gradient, as the whole batch would)."""
    keep = advantages.reshape(advantages.size(0), -1).ne(0).any(1)
    if not keep.any():
        keep[0] = True
    return keep


def kept_rows_scale(loss_type: LossType, keep: Tensor, mask: Tensor) -> Tensor:
    """The factor that turns `grpo_loss` (or `rloo_loss`, as loss_type "grpo") computed on rows `keep` [B] alone into
    the loss of the whole batch, when the other rows contribute 0: per-sequence means ("grpo", "dr_grpo") and RLOO's
    mean scale by kept rows / B, token sums ("bnpo", "dapo" without num_items_in_batch) by kept tokens / all tokens
    (mask [B, T] of the whole batch)."""
    if loss_type in ("grpo", "dr_grpo"):
        return keep.float().mean()
    mask = mask.float()
    return mask[keep].sum() / mask.sum().clamp(min=1.0)


# PPO-RLHF (Ziegler et al. 2019; Ouyang et al. 2022; Touvron et al. 2023), per token [B, T].


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """(x - mean) / sqrt(var + 1e-8) with masked mean and unbiased masked variance; padding set to 0.

    `shift_mean=False` adds the mean back (rescales only), as TRL does for rewards.
    """
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask) * n / (n - 1).clamp(min=1)  # one token: no Bessel correction
    whitened = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    return (whitened if shift_mean else whitened + mean) * mask


def ppo_rewards(
    scores: Tensor,
    logps: Tensor,
    ref_logps: Tensor,
    mask: Tensor,
    kl_coef: float,
    estimator: Literal["k1", "k3"] = "k1",
) -> tuple[Tensor, Tensor]:
    """Per-token rewards r_t = -kl_coef * KL_t, plus the score r_phi(x, y) [B] at each sequence's last token.

    Returns (rewards, kl), both [B, T] and 0 on padding. InstructGPT eq. 2 with the k1 estimator; `logps` are the
    sampling policy's.
    """
    mask = mask.to(logps.dtype)
    kl = (kl_k1 if estimator == "k1" else kl_k3)(logps, ref_logps) * mask
    rewards = -kl_coef * kl
    last = (torch.arange(mask.size(1), device=mask.device) * mask).argmax(1)
    rewards[torch.arange(mask.size(0), device=mask.device), last] += scores
    return rewards, kl


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95, whiten: bool = True
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016): A_t = sum_l (gamma lam)^l delta_{t+l},
    delta_t = r_t + gamma V_{t+1} - V_t, with V = 0 past the last token. Returns (advantages, returns = A + V),
    returns from the raw advantages, advantages then masked-whitened if `whiten`.
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for t in reversed(range(deltas.size(1))):
        running = deltas[:, t] + gamma * lam * running
        advantages[:, t] = running
    returns = advantages + values
    return (masked_whiten(advantages, mask) if whiten else advantages * mask), returns


def ppo_policy_loss(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, mask: Tensor, cliprange: float = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7): token mean of max(-A rho, -A clip(rho, 1 +- eps)).

    Metrics: "clipfrac" (tokens where the clipped term is the larger loss) and "approxkl" (mean 1/2 (log rho)^2).
    """
    mask = mask.to(logps.dtype)
    log_ratio = logps - old_logps
    ratio = torch.exp(log_ratio)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    loss = masked_mean(torch.max(loss1, loss2), mask)
    metrics = {
        "clipfrac": masked_mean((loss2 > loss1).float(), mask),
        "approxkl": masked_mean(0.5 * log_ratio**2, mask),
    }
    return loss, metrics


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, cliprange_value: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped value loss 1/2 * token mean of max((V - R)^2, (clip(V, V_old +- eps) - R)^2); and its clip fraction."""
    mask = mask.to(values.dtype)
    clipped = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    loss1, loss2 = (values - returns) ** 2, (clipped - returns) ** 2
    return 0.5 * masked_mean(torch.max(loss1, loss2), mask), masked_mean((loss2 > loss1).float(), mask)


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019 (eq. 2): e = clip(KL / target - 1, -0.2, 0.2); beta <- beta (1 + e * n_steps / horizon)."""

    value: float
    target: float
    horizon: float

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
