"""The implicit reward of a DPO-trained policy as a scorer (SPA's judge, V-STaR's verifier)."""

from __future__ import annotations

import torch

from selfalign.models.loading import Policy
from selfalign.tasks.base import Problem
from selfalign.training.collate import encode_sft, pad_right
from selfalign.training.objectives import sequence_logprobs


@torch.no_grad()
def completion_logps(policy: Policy, prompts: list[str], completions: list[str], batch_size: int = 256) -> list[float]:
    """Summed log pi(completion + EOS | prompt) for each pair, in length-sorted batches."""
    device = next(policy.model.parameters()).device
    policy.model.eval()
    rows = [encode_sft(policy, p, c) for p, c in zip(prompts, completions)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    out = [0.0] * len(rows)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        batch = {k: v.to(device) for k, v in pad_right([rows[j] for j in idx], policy.tokenizer.pad_token_id).items()}
        logits = policy.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for j, v in zip(idx, sequence_logprobs(logits, batch["labels"])[0].tolist()):
            out[j] = v
    return out


class ImplicitRewardScorer:
    """r(x, y) = beta [log pi(y|x) - log pi_ref(y|x)] with summed (not length-normalised) log-probs."""

    def __init__(self, policy: Policy, reference: Policy, beta: float, batch_size: int = 256):
        self.policy, self.reference, self.beta, self.batch_size = policy, reference, beta, batch_size
        self.name = f"implicit:{policy.source}|{reference.source}"

    def score(self, problems: list[Problem], completions: list[str]) -> list[float]:
        prompts = [p.prompt for p in problems]
        pol = completion_logps(self.policy, prompts, completions, self.batch_size)
        ref = completion_logps(self.reference, prompts, completions, self.batch_size)
        return [self.beta * (a - b) for a, b in zip(pol, ref)]
