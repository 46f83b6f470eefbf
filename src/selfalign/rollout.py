"""Online rollouts: each micro-batch of an online trainer is sampled from the policy being trained and scored.

`GroupRollout` is the `Online` source of `training.grpo`: it draws prompts, samples a group of n completions per
prompt, scores them with any `Scorer` (the task checker, a reward model, an ORM/PRM verifier, an implicit reward),
turns the rewards into group-relative advantages and collates the batch documented in `training.grpo`.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field

import torch

from selfalign.batching import IGNORE, Batch, model_inputs, pad_right
from selfalign.errors import SelfAlignError
from selfalign.generation import SamplingParams, make_sampler
from selfalign.models import Policy
from selfalign.records import Problem
from selfalign.scoring.base import Scorer
from selfalign.tasks.base import Task
from selfalign.training.grpo import Algorithm
from selfalign.training.objectives import token_logprobs
from selfalign.training.pairwise import reference_of
from selfalign.training.rl_objectives import ScaleRewards, grpo_advantages, rloo_advantages, rloo_kl_rewards


class RolloutError(SelfAlignError):
    """A scorer broke its contract (wrong count, NaN); the stage stops before any update uses the batch."""


@dataclass
class GroupRollout:
    policy: Policy
    problems: list[Problem]
    task: Task
    scorer: Scorer
    params: SamplingParams  # n = group size; the seed is combined with (step, micro)
    prompts_per_batch: int
    grad_accum: int = 1  # micro-batches per step: each draws its own prompts
    algorithm: Algorithm = "grpo"
    scale_rewards: ScaleRewards = "group"
    beta: float = 0.0
    backend: str = "hf"
    batch_size: int = 128  # sequences per generate call
    reference: torch.nn.Module | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.problems:
            raise RolloutError("an online trainer needs at least one prompt; the task gave none")
        self.sampler = make_sampler(self.backend, self.policy, self.batch_size)
        if self.beta and not hasattr(self.policy.model, "disable_adapter"):
            # a full fine-tune needs a frozen copy; under LoRA the reference is the model with adapters off
            self.reference = copy.deepcopy(self.policy.model).eval().requires_grad_(False)

    def draw(self, step: int, micro: int) -> list[Problem]:
        """The prompts of micro-batch `micro` of step `step`: epochs over a seeded shuffle, so every prompt is used
        once before any is used twice, and a resumed stage draws what the uninterrupted one did."""
        start = ((step - 1) * self.grad_accum + micro) * self.prompts_per_batch
        out = []
        for i in range(start, start + self.prompts_per_batch):
            epoch, at = divmod(i, len(self.problems))
            order = list(range(len(self.problems)))
            random.Random(f"{self.params.seed}-epoch-{epoch}").shuffle(order)
            out.append(self.problems[order[at]])
        return out

    def next_batch(self, step: int, micro: int) -> Batch:
        problems = self.draw(step, micro)
        params = SamplingParams(**{**self.params.as_dict(), "seed": self.params.seed + 1_000 * step + micro})
        gens = self.sampler.generate([p.prompt for p in problems], params, desc=f"rollout {step}")
        group = [problems[g.prompt_index] for g in gens]
        texts = [g.text for g in gens]
        rewards = self.scores(group, texts)
        gold = [self.task.check(p, t) for p, t in zip(group, texts)]
        rows = []
        for p, g in zip(group, gens):
            ids = self.policy.encode_prompt(p.prompt)
            completion = self.policy.encode_completion(g.text)[: None if g.finished else -1]  # no EOS when cut off
            rows.append({"input_ids": ids + completion, "labels": [IGNORE] * len(ids) + completion})
        batch = pad_right(rows, self.policy.tokenizer.pad_token_id)
        reward = torch.tensor(rewards, dtype=torch.float32)
        batch["reward"] = reward
        batch["gold"] = torch.tensor([c.reward if c.reward is not None else float(c.correct) for c in gold])
        batch["tokens"] = torch.tensor([g.n_tokens for g in gens])
        if self.beta:
            device = next(self.policy.model.parameters()).device
            ref_logps = self.logps(batch, device, reference=True)
            if self.algorithm == "rloo":  # RLOO penalises the sequence reward with k1 from the sampling policy
                mask = batch["labels"][:, 1:] != IGNORE
                reward = rloo_kl_rewards(reward, self.logps(batch, device), ref_logps, mask, self.beta)
            else:
                batch["ref_logps"] = ref_logps
        n = self.params.n
        if self.algorithm == "grpo":
            batch["advantages"] = grpo_advantages(reward, n, self.scale_rewards)
        else:
            batch["advantages"] = rloo_advantages(reward, n)
        return batch

    def scores(self, problems: list[Problem], texts: list[str]) -> list[float]:
        scores = self.scorer.score(problems, texts)
        if len(scores) != len(texts):
            raise RolloutError(f"scorer {self.scorer.name} returned {len(scores)} scores for {len(texts)} completions")
        for p, s in zip(problems, scores):
            if not isinstance(s, int | float) or not math.isfinite(s):
                raise RolloutError(f"scorer {self.scorer.name} gave problem {p.id} the reward {s!r}, not a number")
        return [float(s) for s in scores]

    @torch.no_grad()
    def logps(self, batch: Batch, device: torch.device, reference: bool = False) -> torch.Tensor:
        """Per-token log-probs [B, T-1] of the policy as it is now, or of the reference."""
        inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
        labels = batch["labels"].to(device)
        if not reference:
            return token_logprobs(self.policy.model(**inputs).logits, labels)[0].cpu()
        if self.reference is not None:
            return token_logprobs(self.reference.to(device)(**inputs).logits, labels)[0].cpu()
        with reference_of(self.policy.model) as ref:
            return token_logprobs(ref(**inputs).logits, labels)[0].cpu()
