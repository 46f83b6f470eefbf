"""Sampling backends: HF `generate` (the default) or an in-process vLLM engine. Recipes only see `Sampler`."""

from __future__ import annotations

from selfalign.generation.base import Generation, Sampler, SamplingParams

__all__ = ["Generation", "Sampler", "SamplingParams", "make_sampler"]


def make_sampler(backend: str, policy, batch_size: int = 128) -> Sampler:
    if backend == "hf":
        from selfalign.generation.hf import HFSampler

        return HFSampler(policy, batch_size)
    if backend == "vllm":
        from selfalign.generation.vllm_engine import VLLMSampler

        return VLLMSampler(policy, batch_size)
    raise ValueError(backend)
