"""OpenAI-compatible server sampler (vLLM, SGLang, llama.cpp): `/v1/completions` requests, one per prompt with its n
samples, a bounded number in flight, retried with backoff by the `openai` client. It also reads next-token
log-probs for the LLM judges (`next_token_logprobs`), in either shape servers answer them.

Prompts go out as token ids made by `Policy.encode_prompt`, so the server's own chat template and BOS handling
never apply, and sampling is plain temperature/top-p as in the other backends (llama.cpp's default top-k 40
and min-p 0.05 are switched off). Completions come back as text; their token ids are our tokenizer's encoding
of it (plus EOS when the server stopped on it), which is why online trainers, which train on the sampled ids,
are refused this backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

from tqdm.auto import tqdm

from selfalign.config import ServerConfig
from selfalign.errors import ServerError
from selfalign.generation.base import Generation, SamplingParams, encode_prompts
from selfalign.generation.server import served_files, serving, stop_server
from selfalign.models.loading import Policy, resolve_model_path

T = TypeVar("T")


class OpenAISampler:
    def __init__(self, policy: Policy, server: ServerConfig, checkpoint: str, base: str):
        """`checkpoint` is what `policy` was loaded from and the server must serve; `base` the run's model.path."""
        import openai

        self.policy, self.cfg = policy, server
        if server.url is not None:
            if resolve_model_path(checkpoint) != resolve_model_path(base):
                raise ServerError(
                    f"sampling.server.url serves one fixed model, the run's starting one, but this stage samples from"
                    f" {checkpoint}: give sampling.server.command instead, so that the run serves each checkpoint"
                )
            self.url, self.local = server.url.rstrip("/"), None
        else:
            command = server.command
            for key, value in served_files(policy, checkpoint, base, command).items():
                command = command.replace("{" + key + "}", value)
            self.local = serving(command, server.port, server.startup_timeout)  # the started server
            self.url = self.local.url
        self.client = openai.OpenAI(
            base_url=self.url,
            api_key=os.environ.get("OPENAI_API_KEY", "none"),
            timeout=server.timeout,
            max_retries=server.retries,
        )
        try:
            served = self.client.models.list().data[0]
            self.model = served.id
        except (openai.APIError, IndexError, AttributeError, TypeError) as e:
            raise ServerError(f"{self.url}: listing the served model failed: {e}") from None
        # the server's software (vllm, llamacpp, sglang: `owned_by`) and the served weights, named in provenance
        self.backend = f"openai server ({getattr(served, 'owned_by', None) or 'unknown'}) serving {self.model}"

    def _complete(self, prompt: list[int], **kwargs):
        """One /v1/completions request for the served model; a failure after the retries is a ServerError."""
        import openai

        try:
            return self.client.completions.create(model=self.model, prompt=prompt, **kwargs)
        except openai.APIError as e:
            raise ServerError(f"{self.url}: a request failed after {self.cfg.retries} retries: {e}") from None
        except ValueError as e:  # the body was not JSON
            raise ServerError(f"{self.url}: the server answered malformed JSON: {e}") from None

    def _request(self, prompt: list[int], params: SamplingParams, seed: int):
        greedy = params.temperature == 0
        r = self._complete(
            prompt,
            n=params.n,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            seed=seed,
            extra_body={"top_k": -1, "min_p": 0.0},
        )
        choices = sorted(getattr(r, "choices", None) or [], key=lambda c: c.index)
        if len(choices) != params.n:
            raise ServerError(f"{self.url}: asked for n={params.n} completions of one prompt, got {len(choices)}")
        for c in choices:
            if not isinstance(c.text, str) or c.finish_reason not in ("stop", "length"):
                raise ServerError(
                    f"{self.url}: a malformed completion (text {type(c.text).__name__},"
                    f" finish_reason {c.finish_reason!r}; expected a string and 'stop' or 'length')"
                )
        return choices

    def _map(self, fn: Callable[[int], T], n: int, desc: str) -> list[T]:
        """[fn(0), ..., fn(n-1)], `server.concurrency` at a time, with a progress bar."""
        out: list = [None] * n
        pool = ThreadPoolExecutor(self.cfg.concurrency)
        try:
            futures = {pool.submit(fn, i): i for i in range(n)}
            for future in tqdm(as_completed(futures), total=n, desc=desc, unit="prompt", leave=False):
                out[futures[future]] = future.result()
        except BaseException:
            # Requests still in flight would hold the exit until they time out: a server we started is stopped,
            # which ends them; the client's connections are closed for one we did not.
            pool.shutdown(wait=False, cancel_futures=True)
            if self.cfg.command is not None:
                stop_server()
            self.client.close()
            raise
        pool.shutdown()
        return out

    def generate(
        self, prompts: list[str], params: SamplingParams, desc: str = "sampling", prefills: list[str] | None = None
    ) -> list[Generation]:
        encoded = encode_prompts(self.policy, prompts, prefills)
        seeds = [params.seed * 1_000_003 + i for i in range(len(encoded))]  # per prompt, as in the vllm backend
        answers = self._map(lambda i: self._request(encoded[i], params, seeds[i]), len(encoded), desc)
        out: list[Generation] = []
        for i, choices in enumerate(answers):
            for j, c in enumerate(choices):
                finished = c.finish_reason == "stop"
                ids = self.policy.encode_completion(c.text, eos=finished)
                out.append(Generation(i, j, c.text, len(encoded[i]), len(ids), finished, tuple(ids)))
        return out

    def next_token_logprobs(self, prompts: list[list[int]], desc: str = "judging") -> list[dict[int, float]]:
        """The server's `server.top_logprobs` likeliest next tokens after each prompt (token ids) with their
        log-probs: one greedy token requested with `logprobs` set to that. llama.cpp answers in the chat shape
        (`content[0].top_logprobs`, with ids); vLLM in the completions shape (`top_logprobs[0]`, a token -> log-prob
        map), asked for ids as keys (`token_id:N`); keys that are token strings are matched to ids through our
        tokenizer."""
        top = self.cfg.top_logprobs

        def one(i: int) -> dict[int, float]:
            r = self._complete(
                prompts[i], max_tokens=1, temperature=0.0, logprobs=top, extra_body={"return_tokens_as_token_ids": True}
            )
            try:
                logprobs = r.choices[0].logprobs.model_dump()
            except (IndexError, AttributeError, TypeError) as e:
                raise ServerError(f"{self.url}: the server answered no usable log-probs: {e}") from None
            if logprobs.get("content"):
                return {int(t["id"]): float(t["logprob"]) for t in logprobs["content"][0]["top_logprobs"]}
            if logprobs.get("top_logprobs"):
                return {self._token_id(k): float(v) for k, v in logprobs["top_logprobs"][0].items()}
            raise ServerError(f"{self.url}: the server answered no log-probs (asked for logprobs={top})")

        return self._map(one, len(prompts), desc)

    def _token_id(self, key: str) -> int:
        if key.startswith("token_id:"):
            return int(key.removeprefix("token_id:"))
        if not hasattr(self, "_ids_by_piece"):
            tok = self.policy.tokenizer
            self._ids_by_piece = {tok.decode([i]): i for i in range(len(tok))}
        return self._ids_by_piece.get(key, -1)
