from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Generation:
    prompt_index: int
    sample_index: int
    text: str
    n_prompt_tokens: int
    n_tokens: int  # completion tokens, EOS included when produced
    finished: bool  # stopped at EOS rather than at max_new_tokens
    token_ids: tuple[int, ...] = ()  # the completion as sampled (EOS included when produced); () if not kept


def encode_prompts(policy, prompts: list[str], prefills: list[str] | None) -> list[list[int]]:
    """Each prompt's token ids (chat template included), followed by its prefill's when given: the response is
    forced to start with the prefill."""
    encoded = [policy.encode_prompt(p) for p in prompts]
    if prefills is None:
        return encoded
    return [e + policy.encode_completion(f, eos=False) for e, f in zip(encoded, prefills)]


class Sampler(Protocol):
    backend: str  # engine and version, named in provenance

    def generate(
        self, prompts: list[str], params: SamplingParams, desc: str = "sampling", prefills: list[str] | None = None
    ) -> list[Generation]:
        """n samples per prompt, ordered by (prompt_index, sample_index); deterministic for params.seed.

        `prefills[i]`, when given, is text the response to prompt i starts with; the generation's text
        is what follows it (Math-Shepherd's rollouts from a step prefix)."""
        ...
