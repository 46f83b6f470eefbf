"""Sampling backends: HF `generate` (the default), an in-process vLLM engine, or an OpenAI-compatible server.
Recipes only see `Sampler`."""

from __future__ import annotations

from selfalign.config import ServerConfig
from selfalign.generation.base import Generation, Sampler, SamplingParams

__all__ = ["Generation", "Sampler", "SamplingParams", "make_sampler"]


def make_sampler(
    backend: str,
    policy,
    batch_size: int = 128,
    server: ServerConfig | None = None,
    checkpoint: str | None = None,
    base: str | None = None,
    dtype: str = "auto",
    threads: int | None = None,
) -> Sampler:
    """`server`, `checkpoint` (what `policy` was loaded from) and `base` (the run's model.path): for openai;
    `dtype`: vllm's engine precision (auto: the policy's); `threads`: hf's torch threads while decoding."""
    if backend == "hf":
        from selfalign.generation.hf import HFSampler

        return HFSampler(policy, batch_size, threads)
    if backend == "vllm":
        from selfalign.generation.vllm_engine import VLLMSampler

        return VLLMSampler(policy, batch_size, dtype)
    if backend == "openai":
        from selfalign.generation.openai_api import OpenAISampler

        return OpenAISampler(policy, server, checkpoint, base)
    raise ValueError(backend)
