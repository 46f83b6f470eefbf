"""vLLM sampler: an in-process `vllm.LLM` (TRL's colocate mode), one engine per process, reused across stages.

Every `generate` first pushes the policy's current weights into the engine (LoRA deltas added), so the
engine samples from the model being trained (an online step) or the round's checkpoint without a restart.
Prompts go in as token ids made by `Policy.encode_prompt` and completions come back as ids decoded by our
tokenizer, exactly as in the HF sampler; vLLM never tokenizes.
"""

from __future__ import annotations

import gc
import os

import torch
from tqdm.auto import tqdm

from selfalign.distributed import on_cpu
from selfalign.errors import SelfAlignError
from selfalign.generation.base import Generation, SamplingParams, encode_prompts
from selfalign.models.loading import Policy, merged_weights

_ENGINE: tuple[tuple, object] | None = None  # (signature, vllm.LLM): the process's one engine
TOP_LOGPROBS = 256  # next-token log-probs an LLM judge reads (SmolLM2-135M ranked its labels as low as 178th)


def _engine(policy: Policy, max_num_seqs: int, dtype: str):
    """The process's engine for this architecture and dtype, created on first use (seconds) and kept."""
    global _ENGINE
    model = policy.model
    peft = getattr(model, "peft_config", None)
    path = peft["default"].base_model_name_or_path if peft else model.name_or_path
    config = model.config.to_dict()
    config.pop("_name_or_path", None)
    signature = (repr(sorted(config.items())), dtype, max_num_seqs)
    if _ENGINE is not None and _ENGINE[0] == signature:
        return _ENGINE[1]
    _ENGINE = None
    gc.collect()
    # In-process engine core, so that weights can be handed over as tensors rather than pickled to a subprocess.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    cpu = on_cpu()
    if cpu:
        # vLLM cuts torch to one thread on CPU unless OMP_NUM_THREADS is set, which would slow our training after
        # it; and without a KV-cache size it reserves 92% of the machine's memory, leaving none for training.
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")  # GiB
    from vllm import LLM

    # On a CPU, compiling the model (enforce_eager=False) costs 40-100 s at start and gained nothing measurable
    # (SmolLM2-135M, 64 x 128 tokens: 307 tok/s eager, 299-329 compiled); on a GPU, CUDA graphs pay.
    # A CPU generator cannot rewind, which vLLM does to a seeded request's generator whenever a prompt is prefilled in
    # chunks ("CPU Generator does not use offset"): on a CPU, prompts are prefilled whole.
    # (vLLM also wants at least one token per sequence in a step: max_num_seqs, when a tiny model's context is shorter)
    tokens = max(model.config.max_position_embeddings, max_num_seqs)
    whole = {"enable_chunked_prefill": False, "max_num_batched_tokens": tokens}
    chunks = whole if cpu else {}
    if cpu:  # vLLM's CPU attention kernels exist for some head sizes only; others fail at the first generate
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        head = getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
        if head not in (sizes := CPUAttentionBackend.get_supported_head_sizes()):
            raise SelfAlignError(
                f"vLLM on a CPU runs attention heads of size {sizes}; {path} has {head}: use sampling.backend hf"
            )
    llm = LLM(
        model=path,
        dtype=dtype,
        skip_tokenizer_init=True,
        max_num_seqs=max_num_seqs,
        seed=0,
        enforce_eager=cpu,
        max_logprobs=TOP_LOGPROBS,
        **chunks,
    )
    _ENGINE = (signature, llm)
    return llm


class VLLMSampler:
    def __init__(self, policy: Policy, batch_size: int = 128, dtype: str = "auto"):
        self.policy = policy
        if dtype == "auto":
            dtype = str(policy.model.dtype).removeprefix("torch.")
        self.llm = _engine(policy, batch_size, dtype)
        from vllm import __version__

        self.backend = f"vllm {__version__} ({dtype})"

    @torch.no_grad()
    def sync_weights(self) -> None:
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": merged_weights(self.policy.model)})
        self.llm.reset_prefix_cache()

    def _run(self, token_ids: list[list[int]], params, desc: str) -> list:
        """The engine's outputs for these prompts (token ids) from the policy's current weights, with a progress bar;
        `params`: one vLLM SamplingParams for all, or one per prompt."""
        self.sync_weights()
        return self.llm.generate(
            [{"prompt_token_ids": ids} for ids in token_ids],
            params,
            use_tqdm=lambda *args, **kwargs: tqdm(*args, **{**kwargs, "desc": desc, "leave": False}),
        )

    def next_token_logprobs(self, prompts: list[list[int]], desc: str = "judging") -> list[dict[int, float]]:
        """The engine's TOP_LOGPROBS likeliest next tokens after each prompt (token ids), with their log-probs
        (vLLM's raw log-probs: before any temperature), from the policy's current weights."""
        from vllm import SamplingParams as VLLMParams

        one = VLLMParams(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS, detokenize=False)
        outputs = self._run(prompts, one, desc)
        return [{t: lp.logprob for t, lp in o.outputs[0].logprobs[0].items()} for o in outputs]

    def sequence_logprobs(self, sequences: list[list[int]], starts: list[int], desc: str = "scoring") -> list[float]:
        """Summed log-probs of each sequence's tokens from index `starts[i]` on (a response after its prompt), from
        the policy's current weights: the engine's prompt log-probs, one forward per sequence."""
        from vllm import SamplingParams as VLLMParams

        one = VLLMParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = self._run(sequences, one, desc)
        return [
            sum(o.prompt_logprobs[t][ids[t]].logprob for t in range(start, len(ids)))
            for o, ids, start in zip(outputs, sequences, starts)
        ]

    def generate(
        self, prompts: list[str], params: SamplingParams, desc: str = "sampling", prefills: list[str] | None = None
    ) -> list[Generation]:
        from vllm import SamplingParams as VLLMParams

        tok = self.policy.tokenizer
        encoded = encode_prompts(self.policy, prompts, prefills)
        greedy = params.temperature == 0
        requests = [
            VLLMParams(
                n=params.n,
                temperature=params.temperature,
                top_p=1.0 if greedy else params.top_p,
                max_tokens=params.max_new_tokens,
                stop_token_ids=[tok.eos_token_id],
                detokenize=False,
                seed=None if greedy else params.seed * 1_000_003 + i,  # per prompt: whatever else is in the batch
            )
            for i in range(len(prompts))
        ]
        outputs = self._run(encoded, requests, desc)
        out: list[Generation] = []
        for i, request in enumerate(outputs):
            for j, completion in enumerate(request.outputs):
                seq = list(completion.token_ids)
                finished = completion.finish_reason == "stop"  # on EOS, which token_ids then ends with
                text = tok.decode(seq[: len(seq) - finished], skip_special_tokens=True)
                out.append(Generation(i, j, text, len(encoded[i]), len(seq), finished, tuple(seq)))
        return out
