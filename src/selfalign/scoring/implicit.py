"""The implicit reward of a DPO-trained policy as a scorer (SPA's judge, V-STaR's verifier)."""

from __future__ import annotations

from functools import partial

import torch

from selfalign.batching import Batch, batched_forward, encode_sft, model_inputs, pad_right
from selfalign.models import Policy
from selfalign.records import Problem
from selfalign.training.objectives import implicit_reward, sequence_logprobs


def _logps(model: torch.nn.Module, batch: Batch) -> list[float]:
    return sequence_logprobs(model(**model_inputs(batch)).logits, batch["labels"])[0].tolist()


def completion_logps(policy: Policy, prompts: list[str], completions: list[str], batch_size: int = 256) -> list[float]:
    """Summed log pi(completion + EOS | prompt) for each pair."""
    rows = [encode_sft(policy, p, c) for p, c in zip(prompts, completions)]
    return batched_forward(
        policy.model, rows, partial(pad_right, pad_id=policy.tokenizer.pad_token_id), _logps, batch_size
    )


class ImplicitRewardScorer:
    """r(x, y) = beta [log pi(y|x) - log pi_ref(y|x)] with summed (not length-normalised) log-probs."""

    def __init__(self, policy: Policy, reference: Policy, beta: float, batch_size: int = 256):
        self.policy, self.reference, self.beta, self.batch_size = policy, reference, beta, batch_size
        self.name = f"implicit:{policy.source}|{reference.source}"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        prompts = [p.prompt for p in problems]
        pol = completion_logps(self.policy, prompts, completions, self.batch_size)
        ref = completion_logps(self.reference, prompts, completions, self.batch_size)
        return implicit_reward(torch.tensor(pol), torch.tensor(ref), self.beta).tolist()
