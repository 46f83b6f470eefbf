"""HF transformers sampler: length-bucketed, left-padded batches with a progress bar."""

from __future__ import annotations

import torch
import transformers
from tqdm.auto import tqdm

from selfalign.generation.base import Generation, SamplingParams, encode_prompts
from selfalign.models.loading import Policy


class HFSampler:
    def __init__(self, policy: Policy, batch_size: int = 128, threads: int | None = None):
        self.policy = policy
        self.batch_size = batch_size
        self.threads = threads  # torch threads while decoding; None: the process's
        self.backend = f"hf transformers {transformers.__version__}"  # named in provenance

    def generate(
        self, prompts: list[str], params: SamplingParams, desc: str = "sampling", prefills: list[str] | None = None
    ) -> list[Generation]:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads or threads)
        try:
            return self._generate(prompts, params, desc, prefills)
        finally:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def _generate(
        self, prompts: list[str], params: SamplingParams, desc: str, prefills: list[str] | None
    ) -> list[Generation]:
        model, tok = self.policy.model, self.policy.tokenizer
        model.eval()
        device = next(model.parameters()).device
        encoded = encode_prompts(self.policy, prompts, prefills)
        # Bucketing by length keeps padding (wasted compute) low; batches hold whole prompts x n samples.
        order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
        per_batch = max(1, self.batch_size // params.n)
        batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
        do_sample = params.temperature > 0
        out: list[Generation] = []
        for b, idx in enumerate(tqdm(batches, desc=desc, unit="batch", leave=False)):
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]) :] = 1
            # HF refuses greedy decoding with num_return_sequences > 1: repeat the prompts instead.
            copies = 1 if do_sample else params.n
            # Seeding per batch makes each batch reproducible on its own, whatever ran before it.
            torch.manual_seed(params.seed * 1_000_003 + b)
            gen = model.generate(
                input_ids=ids.repeat_interleave(copies, 0).to(device),
                attention_mask=mask.repeat_interleave(copies, 0).to(device),
                max_new_tokens=params.max_new_tokens,
                do_sample=do_sample,
                temperature=params.temperature if do_sample else None,
                top_p=params.top_p if do_sample else None,
                top_k=0 if do_sample else None,
                num_return_sequences=params.n // copies,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )[:, width:].cpu()
            for row, seq in enumerate(gen.tolist()):
                i = idx[row // params.n]
                finished = tok.eos_token_id in seq
                n_tokens = seq.index(tok.eos_token_id) + 1 if finished else len(seq)
                text = tok.decode(seq[: n_tokens - finished], skip_special_tokens=True)
                out.append(
                    Generation(i, row % params.n, text, len(encoded[i]), n_tokens, finished, tuple(seq[:n_tokens]))
                )
        out.sort(key=lambda g: (g.prompt_index, g.sample_index))
        return out
