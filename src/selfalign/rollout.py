"""Online rollouts: each micro-batch of an online trainer is sampled from the policy being trained and scored.

`PolicyRollout` holds what they share: prompts drawn in seeded epochs, completions sampled from the policy as it is
now and scored by any `Scorer` (the task checker, the gold reward, a reward model, an ORM/PRM verifier, an implicit
reward) with the scorer's contract checked, the collated batch, and the frozen reference's log-probs.
`GroupRollout` is the `Online` source of `training.grpo`: a group of n completions per prompt, group-relative
advantages, the batch documented in `training.grpo`. `PPORollout` is the source of `training.ppo`: one rollout batch
scored into per-token KL-penalised rewards, values and GAE advantages, served as minibatches for several epochs (the
batch documented in `training.ppo`).
"""

from __future__ import annotations

import copy
import math
import random
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from selfalign.batching import IGNORE, Batch, model_inputs, pad_right
from selfalign.errors import InputError, SelfAlignError
from selfalign.generation import SamplingParams, make_sampler
from selfalign.models import Policy, load
from selfalign.records import Problem
from selfalign.scoring.base import Scorer
from selfalign.tasks.base import Task
from selfalign.training.grpo import Algorithm
from selfalign.training.objectives import token_logprobs
from selfalign.training.pairwise import reference_of
from selfalign.training.ppo import KLIn, ValueHeadPolicy
from selfalign.training.rl_objectives import (
    AdaptiveKLController,
    ScaleRewards,
    gae,
    grpo_advantages,
    kl_k1,
    masked_whiten,
    ppo_rewards,
    process_advantages,
    rloo_advantages,
    rloo_kl_rewards,
)


class RolloutError(SelfAlignError):
    """A scorer broke its contract (wrong count, NaN); the stage stops before any update uses the batch."""


@dataclass
class PolicyRollout:
    """The shared part of an online source: draw prompts, sample from the policy being trained, score, collate."""

    policy: Policy
    problems: list[Problem]
    task: Task
    scorer: Scorer
    params: SamplingParams  # n = responses per prompt; the seed is combined with the batch's index
    prompts_per_batch: int
    grad_accum: int = 1  # micro-batches per step
    backend: str = "hf"
    batch_size: int = 128  # sequences per generate call
    dtype: str = "auto"  # the vllm engine's precision
    threads: int | None = None  # hf: torch threads while decoding
    reference_path: str | None = None  # full fine-tunes: the reference checkpoint (default: the policy as it starts)
    reference: torch.nn.Module | None = field(default=None, init=False)

    @property
    def uses_reference(self) -> bool:
        return False

    def __post_init__(self) -> None:
        if not self.problems:
            raise RolloutError("an online trainer needs at least one prompt; the task gave none")
        if self.backend == "openai":
            raise InputError(
                "<config>",
                "openai: online trainers sample every step from the policy as it trains; use hf or vllm",
                field="sampling.backend",
            )
        self.sampler = make_sampler(self.backend, self.policy, self.batch_size, dtype=self.dtype, threads=self.threads)
        if self.uses_reference and not hasattr(self.policy.model, "disable_adapter"):
            # a full fine-tune needs a frozen copy; under LoRA the reference is the model with adapters off
            if self.reference_path is None:
                self.reference = copy.deepcopy(self.policy.model)
            else:
                dtype = str(next(self.policy.model.parameters()).dtype).removeprefix("torch.")
                self.reference = load("policy", self.reference_path, dtype=dtype).model
            self.reference.eval().requires_grad_(False)

    def draw_batch(self, index: int) -> list[Problem]:
        """The prompts of the `index`-th batch (0-based): epochs over a seeded shuffle, so every prompt is used once
        before any is used twice, and a resumed stage draws what the uninterrupted one did."""
        start = index * self.prompts_per_batch
        out = []
        for i in range(start, start + self.prompts_per_batch):
            epoch, at = divmod(i, len(self.problems))
            order = list(range(len(self.problems)))
            random.Random(f"{self.params.seed}-epoch-{epoch}").shuffle(order)
            out.append(self.problems[order[at]])
        return out

    def sample(self, problems: list[Problem], params: SamplingParams, desc: str) -> Batch:
        """n completions per problem from the policy as it is now, scored and collated: input_ids, attention_mask,
        labels [B, T] (IGNORE on prompt and padding; no EOS on a response cut off at max_new_tokens), and per row
        reward (the scorer's), gold (the task's gold reward) and tokens (completion length) [B].

        The completion is trained on as sampled: decoding drops special tokens and re-encoding need not give the
        sampled ids back, and a policy trained on re-encoded text is off-policy there (and free to drift into
        tokens nothing it is trained on contains)."""
        gens = self.sampler.generate([p.prompt for p in problems], params, desc=desc)
        group = [problems[g.prompt_index] for g in gens]
        texts = [g.text for g in gens]
        rewards = self.scores(group, texts)
        gold = [self.task.check(p, t) for p, t in zip(group, texts)]
        rows = []
        for p, g in zip(group, gens):
            ids = self.policy.encode_prompt(p.prompt)
            completion = list(g.token_ids) or self.policy.encode_completion(g.text, g.finished)
            rows.append({"input_ids": ids + completion, "labels": [IGNORE] * len(ids) + completion})
        batch = pad_right(rows, self.policy.tokenizer.pad_token_id)
        batch["reward"] = torch.tensor(rewards, dtype=torch.float32)
        batch["gold"] = torch.tensor([c.score for c in gold], dtype=torch.float32)
        batch["tokens"] = torch.tensor([g.n_tokens for g in gens])
        return batch

    def scores(self, problems: list[Problem], texts: list[str]) -> list[float]:
        scores = self.scorer.score(problems, texts)
        if len(scores) != len(texts):
            raise RolloutError(f"scorer {self.scorer.name} returned {len(scores)} scores for {len(texts)} completions")
        for p, s in zip(problems, scores):
            if not isinstance(s, int | float) or not math.isfinite(s):
                raise RolloutError(f"scorer {self.scorer.name} gave problem {p.id} the reward {s!r}, not a number")
        return [float(s) for s in scores]

    @property
    def device(self) -> torch.device:
        return next(self.policy.model.parameters()).device

    @torch.no_grad()
    def logps(self, batch: Batch, reference: bool = False) -> torch.Tensor:
        """Per-token log-probs [B, T-1] of the policy as it is now, or of the reference."""
        device = self.device
        inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
        labels = batch["labels"].to(device)
        if not reference:
            return token_logprobs(self.policy.model(**inputs).logits, labels)[0].cpu()
        if self.reference is not None:
            return token_logprobs(self.reference.to(device)(**inputs).logits, labels)[0].cpu()
        with reference_of(self.policy.model) as ref:
            return token_logprobs(ref(**inputs).logits, labels)[0].cpu()


@dataclass
class GroupRollout(PolicyRollout):
    """GRPO / RLOO: B / n prompts x a group of n responses per micro-batch, group-relative advantages."""

    algorithm: Algorithm = "grpo"
    scale_rewards: ScaleRewards = "group"
    beta: float = 0.0
    process: bool = False  # GRPO with process supervision: advantages from a PRM's per-step scores

    @property
    def uses_reference(self) -> bool:
        return bool(self.beta)

    def draw(self, step: int, micro: int) -> list[Problem]:
        """The prompts of micro-batch `micro` of step `step`."""
        return self.draw_batch((step - 1) * self.grad_accum + micro)

    def next_batch(self, step: int, micro: int) -> Batch:
        params = replace(self.params, seed=self.params.seed + 1_000 * step + micro)
        problems = self.draw(step, micro)
        batch = self.sample(problems, params, desc=f"rollout {step}")
        reward = batch["reward"]
        if self.beta:
            ref_logps = self.logps(batch, reference=True)
            if self.algorithm == "rloo":  # RLOO penalises the sequence reward with k1 from the sampling policy
                mask = batch["labels"][:, 1:] != IGNORE
                reward = rloo_kl_rewards(reward, self.logps(batch), ref_logps, mask, self.beta)
            else:
                batch["ref_logps"] = ref_logps
        n = self.params.n
        if self.process:
            batch["advantages"] = self.step_advantages(batch, [q for q in problems for _ in range(n)])
        elif self.algorithm == "grpo":
            batch["advantages"] = grpo_advantages(reward, n, self.scale_rewards)
        else:
            batch["advantages"] = rloo_advantages(reward, n)
        return batch

    def step_advantages(self, batch: Batch, problems: list[Problem]) -> torch.Tensor:
        """Per-token advantages [B, T-1] from the PRM's score of each step (the task's `steps`), placed at the
        log-prob position of the token that completes the step (`rl_objectives.process_advantages`)."""
        tok, texts, ends = self.policy.tokenizer, [], []
        for labels in batch["labels"]:
            where = (labels != IGNORE).nonzero().flatten()
            ids = labels[where].tolist()
            # characters decoded after each completion token, to find the token that completes a step
            decoded = [len(tok.decode(ids[: j + 1], skip_special_tokens=True)) for j in range(len(ids))]
            text = tok.decode(ids, skip_special_tokens=True)
            cuts, at = [], 0
            for step in self.task.steps(text):
                found = text.find(step, at)
                at = len(text) if found < 0 else found + len(step)
                cuts.append(int(where[0]) + bisect_left(decoded, at) - 1)  # position t-1 predicts token t
            texts.append(text)
            ends.append(cuts)
        scores = self.scorer.step_scores(problems, texts)
        for p, s, e in zip(problems, scores, ends):
            if len(s) != len(e) or not all(math.isfinite(x) for x in s):
                raise RolloutError(f"scorer {self.scorer.name} gave problem {p.id} step scores {s} for {len(e)} steps")
        return process_advantages(scores, ends, self.params.n, batch["labels"].shape[1] - 1)


# what a PPO rollout batch caches per row: [B, T] sequence tensors, [B, T-1] per-token tensors, [B] per-row tensors
SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels")
TOKEN_KEYS = ("old_logps", "ref_logps", "old_values", "advantages", "returns", "rewards")


@dataclass
class PPORollout(PolicyRollout):
    """PPO-RLHF's experience: one rollout batch of `prompts_per_batch` x n responses, sampled once from the policy as
    it is at the start of a window and used for `ppo_epochs` epochs of `minibatches` optimizer steps (each
    `grad_accum` micro-batches): a window of ppo_epochs x minibatches steps, reshuffled every epoch.

    Per row it keeps the sampling policy's log-probs and values, the reference's log-probs, the per-token rewards
    (score at the last token, -kl_coef * k1 at every token when `kl_in` is "reward"), GAE advantages (whitened over
    the batch) and returns. The window's batch and the KL coefficient are its state, saved in step checkpoints, so a
    stage interrupted mid-window resumes on the same experience.
    """

    critic: ValueHeadPolicy | None = None  # the policy with its value head (the module being trained)
    ppo_epochs: int = 4
    minibatches: int = 1
    kl_coef: float = 0.05  # beta at the start
    kl_in: KLIn = "reward"
    kl_target: float | None = None  # adaptive KL controller's target (None: a fixed coefficient)
    kl_horizon: float = 10_000
    gamma: float = 1.0
    lam: float = 0.95
    whiten_rewards: bool = False
    window: int = field(default=-1, init=False)  # the window the cached batch belongs to
    cache: dict[str, torch.Tensor] = field(default_factory=dict, init=False)

    @property
    def uses_reference(self) -> bool:
        return True  # KL is logged even at kl_coef 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.critic is None:
            raise ValueError("PPORollout needs the critic (the policy with its value head)")
        self.rows = self.prompts_per_batch * self.params.n
        self.micro_per_epoch = self.minibatches * self.grad_accum
        if self.rows % self.micro_per_epoch:
            msg = f"{self.rows} responses per rollout do not split into {self.micro_per_epoch} micro-batches"
            raise ValueError(msg)
        self.micro_size = self.rows // self.micro_per_epoch
        self.kl = AdaptiveKLController(self.kl_coef, self.kl_target or 1.0, self.kl_horizon)

    def next_batch(self, step: int, micro: int) -> Batch:
        window, at = divmod((step - 1) * self.grad_accum + micro, self.ppo_epochs * self.micro_per_epoch)
        if window != self.window:
            self.cache, self.window = self.experience(window), window
        epoch, chunk = divmod(at, self.micro_per_epoch)
        order = torch.randperm(
            self.rows, generator=torch.Generator().manual_seed(self.params.seed + 7919 * window + epoch)
        )
        rows = order[chunk * self.micro_size : (chunk + 1) * self.micro_size]
        width = int(self.cache["attention_mask"][rows].sum(1).max())  # right-padded: drop the all-padding columns

        def trimmed(key: str, value: torch.Tensor) -> torch.Tensor:
            if key in SEQUENCE_KEYS:
                return value[:, :width]
            return value[:, : width - 1] if key in TOKEN_KEYS else value

        return {key: trimmed(key, value[rows]) for key, value in self.cache.items()}

    @torch.no_grad()
    def experience(self, window: int) -> dict[str, torch.Tensor]:
        """Sample and score the window's rollout batch; rewards, values, GAE; update the KL coefficient."""
        params = replace(self.params, seed=self.params.seed + window)
        batch = self.sample(self.draw_batch(window), params, desc=f"rollout {window + 1}")
        mask = (batch["labels"][:, 1:] != IGNORE).float()
        old_logps, old_values = self.policy_and_values(batch)
        ref_logps = self.chunked(batch, lambda b: self.logps(b, reference=True))
        kl = kl_k1(old_logps, ref_logps) * mask  # the sampling policy's KL, logged and tracked by the controller
        coef = self.kl.value
        rewards, _ = ppo_rewards(batch["reward"], old_logps, ref_logps, mask, coef if self.kl_in == "reward" else 0.0)
        if self.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, old_values, mask, self.gamma, self.lam, whiten=True)
        sequence_kl = kl.sum(-1)
        if self.kl_target is not None:
            self.kl.update(sequence_kl.mean().item(), self.rows)
        return {
            **batch,
            "old_logps": old_logps,
            "ref_logps": ref_logps,
            "old_values": old_values,
            "advantages": advantages,
            "returns": returns * mask,  # gae carries A over the prompt positions before the completion
            "rewards": rewards,
            "kl": sequence_kl,
            "kl_coef": torch.full((self.rows,), coef),
        }

    def policy_and_values(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling policy's per-token log-probs and values V(s_t) [B, T-1] (the state before token t+1)."""
        device = self.device

        def forward(b: Batch) -> torch.Tensor:
            logits, values = self.critic(**{k: v.to(device) for k, v in model_inputs(b).items()})
            logps, mask = token_logprobs(logits, b["labels"].to(device))
            return torch.stack([logps, values[:, :-1] * mask]).cpu()

        both = self.chunked(batch, forward, stacked=True)
        return both[0], both[1]

    def chunked(self, batch: Batch, fn: Callable[[Batch], torch.Tensor], stacked: bool = False) -> torch.Tensor:
        """`fn` over micro-batch-sized row chunks (what fits in memory for training fits here), each trimmed to its
        own padding; per-token results [.., B, T-1] padded back with zeros."""
        width = batch["input_ids"].size(1) - 1
        parts = []
        for start in range(0, self.rows, self.micro_size):
            chunk = {k: batch[k][start : start + self.micro_size] for k in SEQUENCE_KEYS}
            used = int(chunk["attention_mask"].sum(1).max())
            out = fn({k: v[:, :used] for k, v in chunk.items()})
            parts.append(torch.nn.functional.pad(out, (0, width - out.size(-1))))
        return torch.cat(parts, dim=1 if stacked else 0)

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "cache": self.cache, "kl_coef": self.kl.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window, self.cache, self.kl.value = state["window"], state["cache"], state["kl_coef"]
