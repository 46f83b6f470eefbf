"""SPA's self-annotation and self-refinement (Kim et al. 2025, official code `kingdy2002/SPA`).

Pure functions for each piece, plus `Refiner`, the small stateful part of training (a rolling window
of recent confidences and the step count for the alpha warm-up).

    judge:       r(x, y) = beta [log pi_{i-1}(y|x) - log pi_SFT(y|x)]   (summed log-probs)
                 y_w = argmax r, confidence p = sigma(r_w - r_l)            (scoring.pairing)
    DND:         logits_mix = (1 + lam) logits_theta - lam logits_ref
                 m = beta ([log pi_mix(y_w) - log pi_ref(y_w)] - [same for y_l])
    refinement:  s = 1[m > tau_t]  (tau_t: the K%-quantile of recent m)
                 alpha_t = 0 for the first 20% of steps, alpha after
                 L = -(1 - alpha_t (1 - s)) log sigma(beta h) - alpha_t (1 - s) log sigma(-beta h)
"""

from __future__ import annotations

from collections import deque

import torch

from selfalign.config import RefinementConfig
from selfalign.training.objectives import implicit_reward, sequence_logprobs


def extrapolated_logits(logits: torch.Tensor, ref_logits: torch.Tensor, lam: float) -> torch.Tensor:
    """De-coupled noise detection: (1 + lam) logits_theta - lam logits_ref (approximates a model trained
    with beta / (1 + lam)); lam = 0 is the policy itself."""
    return (1 + lam) * logits - lam * ref_logits


def alpha_at(step: int, total_steps: int, alpha: float, warmup: float = 0.2) -> float:
    """No refinement for the first `warmup` share of steps (margins are all ~0 at the start)."""
    return 0.0 if step < warmup * total_steps else alpha


def quantile_threshold(values: list[float], quantile: float) -> float:
    """The official code's percentile: the mean of the k-th and (k+1)-th smallest, k = int(n q)
    ((sorted[5] + sorted[6]) / 2 for its window of 50 at q = 0.1)."""
    ordered = sorted(values)
    k = min(int(len(ordered) * quantile), len(ordered) - 1)
    return (ordered[k] + ordered[min(k + 1, len(ordered) - 1)]) / 2


def refined_epsilon(confidence: torch.Tensor, threshold: float, alpha_t: float) -> torch.Tensor:
    """Per-pair label smoothing: alpha_t for pairs at or below the threshold (s = 0), 0 for confident ones."""
    return alpha_t * (confidence <= threshold).float()


class Refiner:
    """Turns each training batch's confidences into per-pair label smoothing (SPA self-refinement)."""

    def __init__(self, cfg: RefinementConfig, beta: float, total_calls: int):
        self.cfg, self.beta, self.total_calls = cfg, beta, total_calls
        self.window: deque[float] = deque(maxlen=cfg.window if cfg.threshold == "rolling" else None)
        self.calls = 0

    def confidence(
        self,
        logits: torch.Tensor,
        ref_logits: torch.Tensor,
        labels: torch.Tensor,
        ref_chosen: torch.Tensor,
        ref_rejected: torch.Tensor,
    ) -> torch.Tensor:
        """m = beta h_mix on the extrapolated policy (rows: chosen then rejected)."""
        mix = extrapolated_logits(logits.detach(), ref_logits, self.cfg.lam)
        logps, _ = sequence_logprobs(mix, labels)
        chosen, rejected = logps.chunk(2)
        return implicit_reward(chosen, ref_chosen, self.beta) - implicit_reward(rejected, ref_rejected, self.beta)

    def epsilon(self, m: torch.Tensor) -> torch.Tensor:
        """Smoothing for this batch; the threshold includes the batch's own confidences, as the
        official code appends before taking the percentile."""
        self.window.extend(m.tolist())
        alpha_t = alpha_at(self.calls, self.total_calls, self.cfg.alpha, self.cfg.warmup)
        self.calls += 1
        return refined_epsilon(m, quantile_threshold(list(self.window), self.cfg.quantile), alpha_t)

    def state_dict(self) -> dict:
        return {"window": list(self.window), "calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.window.clear()
        self.window.extend(state["window"])
        self.calls = state["calls"]
