"""DPO training throughput: selfalign's pairwise trainer vs TRL's DPOTrainer, same run.

Same model weights, tokenizer, pairs (the gold-reward testbed's), batch size, steps, lr and beta;
sigmoid loss; fp32 on CPU. Each configuration runs in its own subprocess, so its peak RSS is its own.
Our trainer batches pairs of similar length (`training.group_by_length`, on by default); TRL 1.16's
DPOTrainer cannot (HF's length-grouped sampler needs an `input_ids` or `length` column, which its
tokenized dataset drops), so it pads every batch to its longest pair. Timing covers everything
from raw pairs to the last optimizer step (tokenization, reference log-probs, training); model
loading is excluded. samples/s = steps x batch size / seconds.

    python benchmarks/dpo_speed.py [--steps 100] [--batch-size 32] [--hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch

CONFIGS = {
    "selfalign (reference precomputed)": ("ours", "precompute"),
    "selfalign (frozen reference model)": ("ours", "model"),
    "TRL DPOTrainer (default: reference model)": ("trl", "model"),
    "TRL DPOTrainer (precompute_ref_log_probs)": ("trl", "precompute"),
}


def build_model(hidden: int, layers: int, out: str) -> None:
    from selfalign.models.factory import tiny_llama
    from selfalign.models.tokenizer import char_tokenizer
    from selfalign.tasks.letters import ALPHABET

    torch.manual_seed(0)
    tok = char_tokenizer(ALPHABET)
    model = tiny_llama(tok, hidden=hidden, layers=layers, heads=max(2, hidden // 64))
    model.save_pretrained(out)
    tok.save_pretrained(out)


def one(args: argparse.Namespace) -> dict:
    from selfalign.config import LettersTaskConfig
    from selfalign.models.loading import load_policy
    from selfalign.tasks.letters import LettersTask

    torch.set_num_threads(2)
    torch.manual_seed(0)
    pairs = LettersTask(LettersTaskConfig(name="letters", n_prompts=args.steps * args.batch_size)).gold_pairs("all")
    pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
    policy = load_policy(args.model, dtype="float32")
    if args.impl == "ours":
        from selfalign.config import PreferenceConfig, TrainingConfig
        from selfalign.training.pairwise import train_pairwise

        cfg = TrainingConfig(
            lr=args.lr,
            steps=args.steps,
            batch_size=args.batch_size,
            warmup_ratio=0.0,
            scheduler="linear",
            weight_decay=0.0,
            mixed_precision="no",
            log_every=args.steps,
        )
        start = time.perf_counter()
        log = train_pairwise(policy, pairs, cfg, None, pref=PreferenceConfig(beta=0.1, reference=args.reference))
        seconds, loss = time.perf_counter() - start, log[-1]["loss"]
    else:
        import datasets
        import trl

        ref = None if args.reference == "precompute" else load_policy(args.model, dtype="float32").model
        with tempfile.TemporaryDirectory() as tmp:
            targs = trl.DPOConfig(
                output_dir=tmp,
                per_device_train_batch_size=args.batch_size,
                max_steps=args.steps,
                learning_rate=args.lr,
                lr_scheduler_type="linear",
                warmup_steps=0,
                weight_decay=0.0,
                beta=0.1,
                loss_type=["sigmoid"],
                precompute_ref_log_probs=args.reference == "precompute",
                logging_steps=args.steps,
                save_strategy="no",
                report_to=[],
                use_cpu=True,
                bf16=False,
                dataloader_num_workers=0,
                disable_tqdm=True,
                seed=0,
            )
            start = time.perf_counter()
            trainer = trl.DPOTrainer(
                model=policy.model,
                ref_model=ref,
                args=targs,
                processing_class=policy.tokenizer,
                train_dataset=datasets.Dataset.from_list(pairs),
            )
            trainer.train()
            seconds = time.perf_counter() - start
            loss = next(h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h)
    return {
        "samples_per_s": args.steps * args.batch_size / seconds,
        "seconds": seconds,
        "final_loss": loss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps for every trainer")
    ap.add_argument("--batch-size", type=int, default=32, help="pairs per step for every trainer")
    ap.add_argument("--hidden", type=int, default=256, help="width of the from-scratch Llama both trainers train")
    ap.add_argument("--layers", type=int, default=4, help="its depth")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--impl", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--reference", choices=["precompute", "model"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        print(json.dumps(one(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        build_model(args.hidden, args.layers, tmp)
        results = {}
        for label, (impl, reference) in CONFIGS.items():
            cmd = [sys.executable, __file__, "--impl", impl, "--reference", reference, "--model", tmp]
            cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[label] = json.loads(out.strip().splitlines()[-1])
    peer = results["TRL DPOTrainer (default: reference model)"]["samples_per_s"]
    print(f"{args.steps} steps x {args.batch_size} pairs, Llama hidden {args.hidden} x {args.layers} layers, CPU fp32")
    print("| trainer | samples/s | ratio vs TRL default | final loss | peak RSS (MiB) |\n|---|---|---|---|---|")
    for label, r in results.items():
        print(
            f"| {label} | {r['samples_per_s']:.1f} | {r['samples_per_s'] / peer:.2f}x | "
            f"{r['final_loss']:.4f} | {r['peak_rss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
