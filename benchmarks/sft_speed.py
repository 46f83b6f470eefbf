"""LoRA SFT training throughput: selfalign's `train_sft` vs TRL's SFTTrainer, same run.

Both trainers start from the same weights (`builtin:smollm2-135m-instruct`, loaded in fp32 with the same
seeded LoRA adapters: r=16, alpha=32, every linear layer, dropout 0) and tokenizer, and train on the same
records with the same batch size, gradient accumulation, steps, lr (linear decay, no warmup), AdamW
(betas 0.9/0.98, eps 1e-8, no weight decay), gradient clipping at 1.0, max length (truncating the end) and
seed, fp32 on CPU, without packing. Neither calls `torch.set_flush_denormal` (selfalign's trainer does not).

Data: steps x batch size x grad accum records, so every trainer sees each record exactly once. Prompts are
ifeval training prompts with one instruction (45-87 tokens under SmolLM2's ChatML template, which adds its
default system prompt); completions are ifeval base requests joined into paragraphs, 150-250 tokens, drawn
by a seeded RNG: deterministic and offline. Our trainer gets the strings (it applies the chat template to
the prompt and appends EOS `<|im_end|>` to the completion); TRL gets the same strings as a conversational
prompt/completion dataset and applies the same template. Loss on completion tokens only in both
(`completion_only_loss=True`, TRL's default for prompt/completion data, set explicitly).

TRL 1.16 settings changed from its defaults to match ours: `gradient_checkpointing=False` (TRL defaults to
True), `bf16=False` (TRL defaults to True), `adam_beta2=0.98`; `packing=False` and `max_length` set
explicitly. What stays TRL's own: its ChatML completion ends with `<|im_end|>\\n`, one token more than ours
per sequence (trained on); its fused LM head projects only the positions with a label (completion tokens)
and never builds the [B, T, vocab] logits, where our model computes the full logits; its fused AdamW.
Batching: ours groups records of similar length by default (`training.group_by_length`); TRL batches at
random unless `train_sampling_strategy="group_by_length"` (HF's LengthGroupedSampler); both are run
both ways. With grad accum > 1 TRL divides the step's loss by all its supervised tokens, ours averages
the micro-batch means (the same compute).

Timing covers raw records to the last optimizer step (chat template, tokenization, training); model
loading and data generation are excluded. tokens/s = non-pad tokens (prompt + completion, as each trainer
tokenized them) of every training forward / seconds, counted by a hook on the model; padding = share of
pad tokens in those forwards; mean loss = mean of the per-step losses over the run. Each configuration
runs in its own subprocess, so its peak RSS (whole process, model included) is its own. Before timing, a
separate process checks the step-0 loss on the same first batch (the first batch-size records): our
pipeline, TRL's (`trainer.compute_loss` on its collated batch) and our `sft_nll` on TRL's batch, which
must equal TRL's loss (same function, same tokens).

    python benchmarks/sft_speed.py --steps 12 --batch-size 8 --max-length 512
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch
from common import (
    TokenCounter,
    conversational,
    isolated,
    load_for_training,
    our_training_config,
    peak_rss_mib,
    serve_worker,
    sft_records,
    speed_parser,
    speed_table,
    token_agreement,
    trl_config_kwargs,
)

REFERENCE = "TRL SFTTrainer (default: random batches)"
CONFIGS = {  # label -> (trainer, length-grouped batches)
    "selfalign train_sft (default: length-grouped)": ("ours", True),
    "selfalign train_sft (random batches)": ("ours", False),
    REFERENCE: ("trl", False),
    "TRL SFTTrainer (group_by_length)": ("trl", True),
}


def n_records(spec: dict) -> int:
    return spec["steps"] * spec["batch_size"] * spec["grad_accum"]


def trl_trainer(policy, records: list[dict], spec: dict, output_dir: str, grouped: bool):
    import datasets
    import trl

    args = trl.SFTConfig(
        **trl_config_kwargs(spec, output_dir),
        max_length=spec["max_length"],
        packing=False,
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if grouped else "random",
    )
    return trl.SFTTrainer(
        model=policy.model,
        args=args,
        processing_class=policy.tokenizer,
        train_dataset=datasets.Dataset.from_list([conversational(r) for r in records]),
    )


def train(spec: dict) -> dict:
    """One configuration: train, and time it from raw records to the last optimizer step."""
    policy = load_for_training(spec)
    records = sft_records(policy.tokenizer, n_records(spec), spec["seed"])
    counter = TokenCounter(policy.model)
    if spec["impl"] == "ours":
        from selfalign.training.trainer import train_sft

        cfg = our_training_config(spec, group_by_length=spec["grouped"])
        start = time.perf_counter()
        log = train_sft(policy, records, cfg, None, seed=spec["seed"], max_length=spec["max_length"])
        seconds = time.perf_counter() - start
        loss = statistics.mean(e["loss"] for e in log)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            trainer = trl_trainer(policy, records, spec, tmp, spec["grouped"])
            trainer.train()
            seconds = time.perf_counter() - start
        loss = next(h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h)
    tokens = counter.remove()
    return {"seconds": seconds, "mean_loss": loss, "peak_rss_mib": peak_rss_mib(), **tokens}


@torch.no_grad()
def check(spec: dict) -> dict:
    """Step-0 loss on the first batch: our pipeline, TRL's, and our loss function on TRL's batch."""
    from selfalign.batching import encode_sft, pad_right
    from selfalign.training.objectives import sft_nll

    policy = load_for_training(spec)
    records = sft_records(policy.tokenizer, n_records(spec), spec["seed"])
    first = records[: spec["batch_size"]]
    model = policy.model.eval()
    ours_rows = [encode_sft(policy, r["prompt"], r["completion"], spec["max_length"]) for r in first]
    batch = pad_right(ours_rows, policy.tokenizer.pad_token_id)
    ours = sft_nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trl_trainer(policy, records, spec, tmp, grouped=False)
        trl_rows = [trainer.train_dataset[i] for i in range(len(first))]
        trl_batch = trainer.data_collator(trl_rows)
        theirs = trainer.compute_loss(model, dict(trl_batch))
        logits = model(input_ids=trl_batch["input_ids"], attention_mask=trl_batch["attention_mask"]).logits
        ours_on_trl = sft_nll(logits, trl_batch["labels"])
    return {
        "ours": ours.item(),
        "trl": theirs.item(),
        "ours_on_trl_batch": ours_on_trl.item(),
        "tokens": token_agreement(
            policy.tokenizer, [r["input_ids"] for r in ours_rows], [r["input_ids"] for r in trl_rows]
        ),
    }


def main() -> None:

    ap = speed_parser(
        __doc__, model="builtin:smollm2-135m-instruct", steps=12, batch_size=8, lr=2e-4, max_length=512, lora_r=16
    )
    args = ap.parse_args()
    if serve_worker(args.worker, check, train):
        return

    from selfalign.models import resolve_model_path

    base = {k: v for k, v in vars(args).items() if k != "worker"}
    base["model"] = resolve_model_path(args.model)
    loss = isolated(__file__, {**base, "impl": "check", "label": "step-0 loss check"})
    results = {
        label: isolated(__file__, {**base, "impl": impl, "grouped": grouped, "label": label})
        for label, (impl, grouped) in CONFIGS.items()
    }
    for r in results.values():
        r["tokens_per_s"] = r["real_tokens"] / r["seconds"]
    peer = results[REFERENCE]["tokens_per_s"]
    lora = f"LoRA r={args.lora_r} alpha={args.lora_alpha or 2 * args.lora_r}" if args.lora_r else "full fine-tuning"
    print(
        f"{args.model}, {lora}: {args.steps} steps x {args.batch_size} records x {args.grad_accum} accum, "
        f"max length {args.max_length or 'unlimited'}, CPU fp32, {args.threads} threads\n"
    )
    print(speed_table(results, "tokens_per_s", "tokens/s", "{:.0f}", peer))
    ours = [r["tokens_per_s"] for label, r in results.items() if CONFIGS[label][0] == "ours"]
    trl = [r["tokens_per_s"] for label, r in results.items() if CONFIGS[label][0] == "trl"]
    print(f"\nLike for like: length-grouped {ours[0] / trl[1]:.2f}x, random batches {ours[1] / trl[0]:.2f}x.")
    print(
        f"Step-0 loss on the first {args.batch_size} records: selfalign {loss['ours']:.5f}, TRL {loss['trl']:.5f}; "
        f"our sft_nll on TRL's batch {loss['ours_on_trl_batch']:.5f}. Tokens: {loss['tokens']}."
    )


if __name__ == "__main__":
    main()
