"""Sampling backends. Recipes only see `Sampler.generate`; vLLM can slot in beside HF."""

from __future__ import annotations

from selfalign.generation.base import Generation, Sampler, SamplingParams

__all__ = ["Generation", "Sampler", "SamplingParams", "make_sampler"]


def make_sampler(backend: str, policy, batch_size: int = 128) -> Sampler:
    if backend == "hf":
        from selfalign.generation.hf import HFSampler

        return HFSampler(policy, batch_size)
    raise ValueError(backend)
