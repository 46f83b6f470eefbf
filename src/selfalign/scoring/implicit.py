"""The implicit reward of a DPO-trained policy as a scorer (SPA's judge, V-STaR's verifier)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from selfalign.batching import IGNORE, Batch, batched_forward, encode_sft, model_inputs, pad_right
from selfalign.models import Policy
from selfalign.records import Problem
from selfalign.training.objectives import implicit_reward, sequence_logprobs


def _logps(model: torch.nn.Module, batch: Batch) -> list[float]:
    return sequence_logprobs(model(**model_inputs(batch)).logits, batch["labels"])[0].tolist()


SequenceLogprobs = Callable[[list[list[int]], list[int]], list[float]]  # ids, response starts -> summed log-probs
EngineFor = Callable[[Policy], SequenceLogprobs | None]  # a sampling engine holding this policy's weights, if any


def completion_logps(
    policy: Policy,
    prompts: list[str],
    completions: list[str],
    batch_size: int = 256,
    engine: SequenceLogprobs | None = None,
) -> list[float]:
    """Summed log pi(completion + EOS | prompt) for each pair: from the model in this process, or from an `engine`
    (the vllm backend's `sequence_logprobs`) holding its weights."""
    rows = [encode_sft(policy, p, c) for p, c in zip(prompts, completions)]
    if engine is not None:
        return engine([r["input_ids"] for r in rows], [r["labels"].count(IGNORE) for r in rows])
    return batched_forward(
        policy.model, rows, partial(pad_right, pad_id=policy.tokenizer.pad_token_id), _logps, batch_size
    )


class ImplicitRewardScorer:
    """r(x, y) = beta [log pi(y|x) - log pi_ref(y|x)] with summed (not length-normalised) log-probs."""

    def __init__(
        self, policy: Policy, reference: Policy, beta: float, batch_size: int = 256, engine_for: EngineFor | None = None
    ):
        """`engine_for`: the log-probs come from a sampling engine given each model's weights in turn (vllm)."""
        self.policy, self.reference, self.beta, self.batch_size = policy, reference, beta, batch_size
        self.engine_for = engine_for or (lambda policy: None)
        self.name = f"implicit:{policy.source}|{reference.source}"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        prompts = [p.prompt for p in problems]
        pol = completion_logps(self.policy, prompts, completions, self.batch_size, self.engine_for(self.policy))
        ref = completion_logps(self.reference, prompts, completions, self.batch_size, self.engine_for(self.reference))
        return implicit_reward(torch.tensor(pol), torch.tensor(ref), self.beta).tolist()
