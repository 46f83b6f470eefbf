"""Helpers shared by the benchmarks.

Testbeds: run a shipped config once per seed, format mean ± sd. Training speed against TRL (`sft_speed.py`,
`dpo_speed.py`, `grpo_speed.py`): each configuration in a fresh interpreter (`isolated`), the options and
optimizer settings both trainers share (`trainer_parser`, `speed_parser`, `our_training_config`,
`trl_config_kwargs`), deterministic ifeval-style records for a chat model (`sft_records`, `preference_pairs`),
and a count of the tokens each trainer feeds its model (`TokenCounter`).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from selfalign.cli import main as selfalign
from selfalign.records import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def run(config: str | Path, out: Path, seed: int, overrides: list[str]) -> list[dict]:
    """`selfalign run CONFIG --out OUT seed=SEED ...`; its metrics rows. A finished run (its report written last) is
    reused, an interrupted one resumed."""
    if not (out / "report.html").is_file():
        resume = ["--resume"] if (out / "manifest.json").is_file() else []
        cmd = ["run", str(ROOT / "configs" / config), "--out", str(out), *resume, f"seed={seed}", *overrides]
        code = selfalign(cmd)
        assert code == 0, f"run failed: {out}"
    return read_jsonl(out / "metrics.jsonl")


def spread(xs: list[float], fmt: str = "{:.1%}") -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{fmt.format(statistics.mean(xs))} ± {fmt.format(sd)}"


def slug(label: str) -> str:
    """A run directory name from a table label: "GRPO, process supervision" -> "grpo-process-supervision"."""
    return "-".join("".join(c for c in label.lower() if c.isalnum() or c == " ").split())


def testbed_parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """The options every testbed benchmark takes: --seeds and --out (a finished run there is reused)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed and system")
    ap.add_argument("--out", type=Path, default=Path(out), help="runs go here; a finished run is reused")
    return ap


def build_pi_sft_arith5(out: Path, seed: int, problems: int = 32, steps: int = 30, lr: float = 1e-3) -> Path:
    """pi_sft: arith-tiny fine-tuned on gold 5-digit scratchpads of `problems` sums (drawn apart from any recipe's),
    the generator of configs/per_step_dpo.yaml and configs/prm_active.yaml. Built once; reused if present."""
    from selfalign.config import ArithmeticTaskConfig, TrainingConfig
    from selfalign.models import load
    from selfalign.tasks.arithmetic import ArithmeticTask, solution
    from selfalign.training.trainer import train_sft

    if (out / "config.json").is_file():
        return out
    task = ArithmeticTask(ArithmeticTaskConfig(train_digits=[5], eval_digits=[5], n_train=problems, n_eval=200))
    records = [{"prompt": q.prompt, "completion": solution(q)} for q in task.train_problems(1000, seed)]
    torch.manual_seed(seed)
    policy = load("policy", "builtin:arith-tiny")
    train_sft(policy, records, TrainingConfig(lr=lr, steps=steps, batch_size=32), out, seed=seed)
    return out


def pi_sft_runs(config: str, out: Path, name: str, seeds: list[int], overrides: list[str]) -> list[list[dict]]:
    """One run of `config` per seed in out/<name>-s<seed>, each from its own pi_sft (`build_pi_sft_arith5` with that
    seed); their metrics rows."""
    runs = []
    for s in seeds:
        model = build_pi_sft_arith5(out / f"pi-sft-s{s}", s)
        runs.append(run(config, out / f"{name}-s{s}", s, [f"model.path={model}", *overrides]))
    return runs


# -- training speed against TRL ------------------------------------------------------------------------------


def trainer_parser(
    doc: str | None,
    *,
    model: str | None,
    steps: int,
    batch_size: int,
    lr: float,
    batch_unit: str,
    model_note: str = "",
    no_model: str = "",
    accum_note: str = "",
) -> argparse.ArgumentParser:
    """The options every speed benchmark against TRL takes (model, steps, batch size, gradient accumulation, lr,
    threads, seed); each script passes its own defaults. `batch_unit`: what --batch-size counts; `model_note`: what
    --model must be; `no_model`: what runs when --model is not given; `accum_note`: added to --grad-accum's help."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        default=model,
        help=f"checkpoint both trainers start from: HF id, local directory or builtin:<name>{model_note} "
        f"(default: {model or no_model})",
    )
    ap.add_argument("--steps", type=int, default=steps, help="optimizer steps for every trainer (default: %(default)s)")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"{batch_unit} per micro-batch for every trainer (default: %(default)s)",
    )
    ap.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        help=f"micro-batches per optimizer step{accum_note} (default: %(default)s)",
    )
    ap.add_argument(
        "--lr", type=float, default=lr, help="peak learning rate, linear decay, no warmup (default: %(default)s)"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads in every run (default: %(default)s)")
    ap.add_argument(
        "--seed", type=int, default=0, help="seed of the data, its order, sampling and LoRA init (default: %(default)s)"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one configuration, as JSON, in its own process
    return ap


def speed_parser(
    doc: str | None,
    *,
    model: str | None,
    steps: int,
    batch_size: int,
    lr: float,
    max_length: int | None,
    lora_r: int,
    no_model: str = "",
) -> argparse.ArgumentParser:
    """The options sft_speed.py and dpo_speed.py share: `trainer_parser`'s plus truncation and LoRA."""
    ap = trainer_parser(
        doc,
        model=model,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        batch_unit="records (SFT) or pairs (DPO)",
        model_note=" with a chat template",
        no_model=no_model,
        accum_note="; the data is steps x batch size x grad accum records, one epoch",
    )
    ap.add_argument(
        "--max-length",
        type=int,
        default=max_length,
        help="truncate each prompt+completion sequence to this many tokens, keeping its start, in both trainers "
        "(default: %(default)s = no truncation)",
    )
    ap.add_argument(
        "--lora-r",
        type=int,
        default=lora_r,
        help="LoRA rank on all linear layers, dropout 0; 0 = full fine-tuning (default: %(default)s)",
    )
    ap.add_argument("--lora-alpha", type=int, default=None, help="LoRA alpha (default: 2 x rank)")
    return ap


def isolated(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run `script --worker SPEC` in a fresh interpreter (so its peak RSS is its own); the JSON of its last line."""
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"configuration {spec.get('label')!r} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_worker(spec: dict[str, Any]) -> None:
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_for_training(spec: dict[str, Any]):
    """The policy both trainers train: fp32, with fresh LoRA adapters (seeded, so the same in every run) if asked."""
    from selfalign.config import LoraConfig
    from selfalign.models import load

    lora = None
    if spec["lora_r"]:
        alpha = spec["lora_alpha"] or 2 * spec["lora_r"]
        lora = LoraConfig(r=spec["lora_r"], alpha=alpha, dropout=0.0, target_modules="all-linear")
    torch.manual_seed(spec["seed"])
    return load("policy", spec["model"], lora=lora, dtype="float32")


def our_training_config(spec: dict[str, Any], group_by_length: bool = True):
    """selfalign's TrainingConfig for the shared settings: linear decay without warmup, no weight decay, fp32."""
    from selfalign.config import TrainingConfig

    return TrainingConfig(
        lr=spec["lr"],
        steps=spec["steps"],
        batch_size=spec["batch_size"],
        grad_accum=spec["grad_accum"],
        warmup_ratio=0.0,
        scheduler="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        mixed_precision="no",
        log_every=spec["steps"],
        group_by_length=group_by_length,
    )


def trl_config_kwargs(spec: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """SFTConfig/DPOConfig settings that match `our_training_config`. TRL 1.x defaults that differ from ours and
    are set here: gradient_checkpointing (True in TRL; we do not checkpoint the model), bf16 (True in TRL; we
    train in fp32), adam_beta2 (0.999 in TRL; our AdamW uses 0.98). logging_steps = steps makes TRL log the
    mean loss of the whole run once (the loss we report for both)."""
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": spec["batch_size"],
        "gradient_accumulation_steps": spec["grad_accum"],
        "max_steps": spec["steps"],
        "learning_rate": spec["lr"],
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "adam_beta1": 0.9,
        "adam_beta2": 0.98,
        "adam_epsilon": 1e-8,
        "max_grad_norm": 1.0,
        "gradient_checkpointing": False,
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "seed": spec["seed"],
        "logging_steps": spec["steps"],
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
    }


class TokenCounter:
    """Counts the tokens of every gradient-enabled forward of `model` (training forwards; reference and precompute
    passes run under no_grad): `real` = attention-mask ones, `padded` = input_ids elements."""

    def __init__(self, model: torch.nn.Module):
        self.real = self.padded = 0
        self.handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        if not torch.is_grad_enabled():
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if ids is not None:
            self.padded += ids.numel()
            self.real += int(mask.sum()) if mask is not None else ids.numel()

    def remove(self) -> dict[str, int]:
        self.handle.remove()
        return {"real_tokens": self.real, "padded_tokens": self.padded}


# Records for a chat model: ifeval training prompts, completions made of its base requests.


def ifeval_prompts(n: int, seed: int) -> list[str]:
    """n distinct ifeval training prompts with one instruction each (45-87 tokens under SmolLM2's ChatML
    template, its default system prompt included)."""
    from selfalign.config import IfevalTaskConfig
    from selfalign.tasks.ifeval import IfevalTask

    task = IfevalTask(IfevalTaskConfig(name="ifeval", n_train=n, max_constraints=1))
    return [p.prompt for p in task.train_problems(0, seed)]


def filler(tokenizer, rng: random.Random, lo: int = 150, hi: int = 250) -> str:
    """A deterministic reply of ifeval base requests, in paragraphs of four sentences, cut at the first sentence
    that brings it to at least a length drawn uniformly from [lo, hi] tokens."""
    from selfalign.tasks.ifeval import BASE_TASKS

    target = rng.randint(lo, hi)
    sentences: list[str] = []
    text = ""
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < target:
        sentences.append(rng.choice(BASE_TASKS))
        paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
        text = "\n\n".join(paragraphs)
    return text


def sft_records(tokenizer, n: int, seed: int) -> list[dict[str, str]]:
    """n prompt/completion records (completions 150-250 tokens), the same for every run with this seed."""
    rng = random.Random(f"sft-speed-{seed}")
    return [{"prompt": p, "completion": filler(tokenizer, rng)} for p in ifeval_prompts(n, seed)]


def preference_pairs(tokenizer, n: int, seed: int) -> list[dict[str, str]]:
    """n prompt/chosen/rejected pairs; chosen and rejected are different texts with independently drawn lengths."""
    rng = random.Random(f"dpo-speed-{seed}")
    return [
        {"prompt": p, "chosen": filler(tokenizer, rng), "rejected": filler(tokenizer, rng)}
        for p in ifeval_prompts(n, seed)
    ]


def conversational(record: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """TRL's conversational form of a string record: the prompt as a user turn, every other field an assistant turn."""
    return {k: [{"role": "user" if k == "prompt" else "assistant", "content": v}] for k, v in record.items()}


def token_agreement(tokenizer, ours: list[list[int]], theirs: list[list[int]]) -> str:
    """How TRL's token ids of each sequence compare with ours: identical, or ours plus a tail (which)."""
    same = sum(a == b for a, b in zip(ours, theirs))
    tails = {tokenizer.decode(b[len(a) :]) for a, b in zip(ours, theirs) if a != b and b[: len(a)] == a}
    other = sum(a != b and b[: len(a)] != a for a, b in zip(ours, theirs))
    out = f"{same}/{len(ours)} sequences token-identical"
    if tails:
        out += f"; TRL's = ours + {sorted(tails)!r}"
    if other:
        out += f"; {other} differ otherwise"
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def serve_worker(worker: str | None, check: Any, train: Any) -> bool:
    """In a worker subprocess (`--worker SPEC`): run the step-0 check or one trainer, print its JSON result."""
    if not worker:
        return False
    spec = json.loads(worker)
    start_worker(spec)
    print(json.dumps(check(spec) if spec["impl"] == "check" else train(spec)))
    return True


def speed_table(results: dict[str, dict], rate: str, unit: str, fmt: str, peer: float) -> str:
    """Throughput `rate` (e.g. tokens_per_s) of each configuration, its ratio to `peer`, seconds, share of padded
    positions, mean loss and peak RSS, as a markdown table."""
    rows = [
        [
            label,
            fmt.format(r[rate]),
            f"{r[rate] / peer:.2f}x",
            f"{r['seconds']:.2f}",
            f"{1 - r['real_tokens'] / r['padded_tokens']:.1%}",
            f"{r['mean_loss']:.4f}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        for label, r in results.items()
    ]
    header = ["trainer", unit, "ratio vs TRL default", "seconds", "padding", "mean loss", "peak RSS (MiB)"]
    return markdown_table(header, rows)
