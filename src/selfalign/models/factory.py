"""Tiny Llama-style models built from scratch, for tests, the demo and CPU benchmarks."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

# rope_theta this large makes every rotary frequency but the first ~0: NoPE-like positions, which
# generalise to longer inputs far better at this scale (Lee et al. 2025).
NOPE_THETA = 1e30


def tiny_llama(
    tokenizer: PreTrainedTokenizerBase,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    ffn: int | None = None,
    max_positions: int = 512,
    nope: bool = True,
) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=ffn or 4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if nope:
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": NOPE_THETA}
    return LlamaForCausalLM(cfg)
