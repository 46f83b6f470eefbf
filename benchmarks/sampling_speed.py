"""Sampling throughput: selfalign's HF sampler vs a plain per-prompt `model.generate` loop.

Same model, prompts, n samples per prompt, temperature and token budget; both count completion
tokens up to and including EOS. Reports tokens/s for each and their ratio (measured in one run).

    python benchmarks/sampling_speed.py [--prompts 128] [--n 4]
    python benchmarks/sampling_speed.py --model builtin:smollm2-135m-instruct --task ifeval --prompts 8 --n 4
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spinning threads lose 5-20x on 2 cores

import torch  # noqa: E402

from selfalign.config import ArithmeticTaskConfig, IfevalTaskConfig  # noqa: E402
from selfalign.generation import SamplingParams, make_sampler
from selfalign.models.loading import load_policy
from selfalign.tasks.arithmetic import ArithmeticTask
from selfalign.tasks.ifeval import IfevalTask


def plain_loop(policy, prompts, params) -> int:
    tok, model, tokens = policy.tokenizer, policy.model, 0
    for p in prompts:
        ids = torch.tensor([policy.encode_prompt(p)])
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=params.temperature,
            top_k=0,
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )[:, ids.shape[1] :]
        for seq in out.tolist():
            tokens += seq.index(tok.eos_token_id) + 1 if tok.eos_token_id in seq else len(seq)
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:arith-tiny")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--task", choices=["arithmetic", "ifeval"], default="arithmetic", help="prompt source")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.task == "ifeval":  # chat prompts: writing requests with instructions
        task = IfevalTask(IfevalTaskConfig(name="ifeval", n_train=args.prompts))
    else:
        cfg = ArithmeticTaskConfig(train_digits=[1, 2, 3, 4], n_train=args.prompts // 4, eval_digits=[1])
        task = ArithmeticTask(cfg)
    prompts = [p.prompt for p in task.train_problems(1, seed=0)]
    policy = load_policy(args.model)
    params = SamplingParams(n=args.n, temperature=0.7, max_new_tokens=args.max_new_tokens, seed=0)

    t0 = time.perf_counter()
    gens = make_sampler("hf", policy, batch_size=256).generate(prompts, params)
    ours = time.perf_counter() - t0
    ours_tokens = sum(g.n_tokens for g in gens)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    plain_tokens = plain_loop(policy, prompts, params)
    plain = time.perf_counter() - t0
    print(f"prompts={len(prompts)} n={args.n} max_new_tokens={args.max_new_tokens} model={args.model}")
    print(f"selfalign sampler: {ours_tokens} tokens in {ours:.2f}s = {ours_tokens / ours:.0f} tok/s")
    print(f"plain generate loop: {plain_tokens} tokens in {plain:.2f}s = {plain_tokens / plain:.0f} tok/s")
    print(f"speed ratio (tok/s): {(ours_tokens / ours) / (plain_tokens / plain):.2f}x")
    print(f"peak RSS of the process (both runs): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
