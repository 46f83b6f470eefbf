"""PPO-RLHF (Ziegler et al. 2019; InstructGPT, Ouyang et al. 2022; Llama 2, Touvron et al. 2023) as a trainer.

The policy and a value head train as one module (`ValueHeadPolicy`), so one optimizer (and one DDP wrapper) holds
both: loss = clipped policy loss + vf_coef * clipped value loss (+ kl_coef * k3 when the KL is in the loss). The
batches come from `selfalign.rollout.PPORollout`, which samples a rollout batch from the policy, scores it, and serves
it as minibatches for several epochs. Its micro-batches (rows of one rollout batch, trimmed to their padding):

    input_ids, attention_mask, labels  [B, T]    prompt + sampled completion; labels IGNORE on prompt and padding
    old_logps, old_values              [B, T-1]  the sampling policy's log-probs and values V(s_t), 0 on padding
    ref_logps                          [B, T-1]  the reference's log-probs
    rewards, advantages, returns       [B, T-1]  per-token rewards, whitened GAE advantages, returns = A + V
    reward, gold, tokens               [B]       scorer reward, task gold reward, completion length (logged)
    kl, kl_coef                        [B]       sum_t k1 of the sampling policy, the coefficient it was penalised by

The trained policy is saved as any policy (it loads with `models.load("policy", ...)`); the value head and the final
KL coefficient go next to it in `ppo_state.pt`, from which a later round continues (`init_from`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

import torch

from selfalign.batching import Batch, model_inputs
from selfalign.config import TrainingConfig
from selfalign.distributed import process_state
from selfalign.models import Policy
from selfalign.records import atomic_write
from selfalign.training.grpo import token_entropy
from selfalign.training.objectives import token_logprobs
from selfalign.training.rl_objectives import (
    AdaptiveKLController,
    kl_k3,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
)
from selfalign.training.trainer import Online, Stateful, train_and_save

KLIn = Literal["reward", "loss"]
STATE_FILE = "ppo_state.pt"


class ValueHeadPolicy(torch.nn.Module):
    """The policy and a value head V(s_t) = w . h_t + b on its last hidden state h_t (TRL's
    `AutoModelForCausalLMWithValueHead`): forward returns (logits [B, T, V], values [B, T]). The head starts at zero
    (V = 0) and runs in float32 whatever the policy's dtype."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.policy = model
        self.value_head = torch.nn.Linear(model.config.hidden_size, 1, dtype=torch.float32)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        self.value_head.to(next(model.parameters()).device)

    def forward(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(**inputs, output_hidden_states=True)
        return out.logits, self.value_head(out.hidden_states[-1].float()).squeeze(-1)


class PPOSource(Online, Stateful, Protocol):
    """What the trainer needs of its rollout: batches, state for step checkpoints, and the KL coefficient."""

    kl: AdaptiveKLController


def train_ppo(
    policy: Policy,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    rollout: Callable[..., PPOSource],
    cliprange: float = 0.2,
    cliprange_value: float = 0.2,
    vf_coef: float = 0.1,
    kl_in: KLIn = "reward",
    init_from: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "ppo",
) -> list[dict]:
    """Train `policy` and a value head on the rollout batches `rollout(policy, critic=...)` makes (the records, the
    prompts, are the rollout's). `init_from`: a PPO checkpoint whose value head and KL coefficient to continue from.
    Logs per step: loss, policy and value losses, reward, gold reward, KL, KL coefficient, entropy, completion
    length, clip fractions, approximate KL between the policy and the sampling policy."""
    critic = ValueHeadPolicy(policy.model)
    source = rollout(policy, critic=critic)
    if init_from is not None:
        state = torch.load(Path(init_from) / STATE_FILE, map_location="cpu")
        critic.value_head.load_state_dict(state["value_head"])
        source.kl.value = state["kl_coef"]

    def compute_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        logits, values = model(**model_inputs(batch))
        logps, mask = token_logprobs(logits, batch["labels"])
        mask = mask.float()
        pg_loss, metrics = ppo_policy_loss(logps, batch["old_logps"], batch["advantages"], mask, cliprange)
        vf_loss, vf_clipfrac = ppo_value_loss(
            values[:, :-1], batch["old_values"], batch["returns"], mask, cliprange_value
        )
        loss = pg_loss + vf_coef * vf_loss
        if kl_in == "loss":
            loss = loss + batch["kl_coef"][0] * masked_mean(kl_k3(logps, batch["ref_logps"]), mask)
        return loss, {
            **metrics,
            "pg_loss": pg_loss.detach(),
            "vf_loss": vf_loss.detach(),
            "vf_clipfrac": vf_clipfrac,
            "reward": batch["reward"].mean(),
            "gold_reward": batch["gold"].mean(),
            "kl": batch["kl"].mean(),
            "kl_coef": batch["kl_coef"].mean(),
            "entropy": masked_mean(token_entropy(logits), mask),
            "completion_tokens": batch["tokens"].float().mean(),
        }

    log = train_and_save(
        policy, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc, stateful=(source,), module=critic
    )
    if out_dir is not None and process_state().is_main_process:
        state = {"value_head": critic.value_head.state_dict(), "kl_coef": source.kl.value}
        atomic_write(Path(out_dir) / STATE_FILE, lambda f: torch.save(state, f))
    return log
