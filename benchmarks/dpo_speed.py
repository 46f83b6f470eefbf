"""DPO training throughput: selfalign's pairwise trainer vs TRL's DPOTrainer, same run.

Same model weights, tokenizer, pairs, batch size, gradient accumulation, steps, lr (linear decay, no warmup),
AdamW (betas 0.9/0.98, eps 1e-8, no weight decay), clipping at 1.0, max length, beta and seed; sigmoid
loss; fp32 on CPU. Neither calls `torch.set_flush_denormal` (selfalign's trainer does not). Each
configuration runs in its own subprocess, so its peak RSS is its own (the whole process, model included).

Models and data:
- default: a from-scratch Llama (`--hidden`, `--layers`, char tokenizer, no chat template), fully fine-tuned
  on the `letters` task's gold pairs as plain strings.
- `--model builtin:smollm2-135m-instruct --lora-r 16` (any chat model): the checkpoint in fp32 with the
  same seeded LoRA adapters (alpha 2 x rank unless `--lora-alpha`, all linear layers, dropout 0), on ifeval
  training prompts with one instruction (45-87 tokens under SmolLM2's ChatML template and default system
  prompt) and two different replies made of ifeval base requests, each 150-250 tokens (lengths drawn
  independently), from a seeded RNG: deterministic and offline. TRL gets them as conversational
  prompt/chosen/rejected turns, ours as strings; both apply the same chat template. With LoRA, both
  trainers' reference is the model with its adapters disabled (no second copy): TRL gets the base model and
  `peft_config` (its usual LoRA path) and its fresh adapters are then overwritten with ours, because a model
  passed already wrapped makes TRL 1.16 copy the adapter into a second `ref` adapter and run every
  reference forward through it (equal at step 0 for fresh adapters, but extra LoRA matmuls each step).
The data is steps x batch size x grad accum pairs: every trainer sees each pair exactly once.

TRL 1.16 settings changed from its defaults to match ours: `gradient_checkpointing=False` (TRL defaults to
True, which recomputes activations in the backward pass), `bf16=False` (TRL defaults to True),
`adam_beta2=0.98`, `max_length` (TRL: 1024; here `--max-length` for both, default none). What stays TRL's
own: with a chat template its completions end with `<|im_end|>\\n`, one token more than ours; its fused LM
head computes log-probs in tiles without the [B, T, vocab] logits (ours builds them); its fused AdamW.
Our trainer batches pairs of similar length (`training.group_by_length`, on by default); TRL 1.16's
DPOTrainer cannot (HF's length-grouped sampler needs an `input_ids` or `length` column, which its
tokenized dataset drops), so it pads every batch to its longest pair. Timing covers everything
from raw pairs to the last optimizer step (tokenization, reference log-probs, training); model
loading and data generation are excluded. samples/s = pairs (steps x batch size x grad accum) / seconds;
padding = share of pad tokens in the training forwards (reference passes not counted); mean loss = mean
of the per-step losses over the run (TRL logs it once, with logging_steps = steps).

Step-0 check, in its own process: on the first batch-size pairs, with the adapters (or, without LoRA, the
policy's weights) perturbed by seeded noise so that policy and reference differ (at step 0 proper both
losses are log 2 by construction), the DPO loss of our pipeline, of TRL's (`trainer.compute_loss` on its
collated batch) and of our loss functions on TRL's batch (same tokens: must equal TRL's).

    python benchmarks/dpo_speed.py [--steps 100] [--batch-size 32] [--hidden 256 --layers 4]
    python benchmarks/dpo_speed.py --model builtin:smollm2-135m-instruct --lora-r 16 --lr 2e-4 \\
        --steps 6 --batch-size 8 --max-length 512
"""

from __future__ import annotations

import copy
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
    preference_pairs,
    serve_worker,
    speed_parser,
    speed_table,
    token_agreement,
    trl_config_kwargs,
)

REFERENCE = "TRL DPOTrainer (default: reference model)"
CONFIGS = {  # label -> (trainer, reference)
    "selfalign (reference precomputed)": ("ours", "precompute"),
    "selfalign (frozen reference model)": ("ours", "model"),
    REFERENCE: ("trl", "model"),
    "TRL DPOTrainer (precompute_ref_log_probs)": ("trl", "precompute"),
}
BETA = 0.1


def build_model(hidden: int, layers: int, out: str) -> None:
    from selfalign.models.factory import tiny_llama
    from selfalign.models.tokenizer import char_tokenizer
    from selfalign.tasks.letters import ALPHABET

    torch.manual_seed(0)
    tok = char_tokenizer(ALPHABET)
    model = tiny_llama(tok, hidden=hidden, layers=layers, heads=max(2, hidden // 64))
    model.save_pretrained(out)
    tok.save_pretrained(out)


def load_pairs(spec: dict, tokenizer) -> list[dict]:
    n = spec["steps"] * spec["batch_size"] * spec["grad_accum"]
    if spec["chat"]:
        return preference_pairs(tokenizer, n, spec["seed"])
    from selfalign.config import LettersTaskConfig
    from selfalign.tasks.letters import LettersTask

    pairs = LettersTask(LettersTaskConfig(name="letters", n_prompts=n)).gold_pairs("all")
    return [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]


def trl_trainer(policy, pairs: list[dict], spec: dict, output_dir: str, reference: str, ref_model=None):
    """TRL's DPOTrainer on `policy`. Under LoRA it takes TRL's usual path, the base model plus `peft_config`, and
    starts from our adapters' weights: a model passed already wrapped would make TRL copy its adapter into a second
    `ref` adapter and run every reference forward through it, where TRL's own LoRA path (and ours) disables the
    adapters. This unloads the adapters from `policy.model` in place."""
    import datasets
    import trl
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    args = trl.DPOConfig(
        **trl_config_kwargs(spec, output_dir),
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=spec["max_length"],
        precompute_ref_log_probs=reference == "precompute",
    )
    model, peft_config, adapters = policy.model, None, None
    if spec["lora_r"]:
        peft_config = copy.deepcopy(model.peft_config["default"])
        adapters = get_peft_model_state_dict(model)
        model = model.unload()
    rows = [conversational(p) for p in pairs] if spec["chat"] else pairs
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        processing_class=policy.tokenizer,
        train_dataset=datasets.Dataset.from_list(rows),
        peft_config=peft_config,
    )
    if adapters is not None:
        result = set_peft_model_state_dict(trainer.model, adapters)
        assert not result.unexpected_keys and "ref" not in trainer.model.peft_config, result
        assert not [k for k in result.missing_keys if "lora_" in k], result.missing_keys
    return trainer


def train(spec: dict) -> dict:
    """One configuration: train, and time it from raw pairs to the last optimizer step."""
    policy = load_for_training(spec)
    pairs = load_pairs(spec, policy.tokenizer)
    if spec["impl"] == "ours":
        from selfalign.config import PreferenceConfig
        from selfalign.training.pairwise import train_pairwise

        pref = PreferenceConfig(beta=BETA, reference=spec["reference"])
        counter = TokenCounter(policy.model)
        start = time.perf_counter()
        log = train_pairwise(
            policy, pairs, our_training_config(spec), None, pref=pref, seed=spec["seed"], max_length=spec["max_length"]
        )
        seconds = time.perf_counter() - start
        loss = statistics.mean(e["loss"] for e in log)
    else:
        # a frozen copy only for full fine-tuning with a reference model; under LoRA TRL disables the adapters
        ref = None
        if spec["reference"] == "model" and not spec["lora_r"]:
            ref = load_for_training(spec).model
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            trainer = trl_trainer(policy, pairs, spec, tmp, spec["reference"], ref)
            counter = TokenCounter(trainer.model)  # under LoRA, the PeftModel TRL made
            trainer.train()
            seconds = time.perf_counter() - start
        loss = next(h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h)
    n = spec["steps"] * spec["batch_size"] * spec["grad_accum"]
    tokens = counter.remove()
    return {
        "samples_per_s": n / seconds,
        "seconds": seconds,
        "mean_loss": loss,
        "peak_rss_mib": peak_rss_mib(),
        **tokens,
    }


@torch.no_grad()
def check(spec: dict) -> dict:
    """DPO loss on the first batch with policy != reference: our pipeline, TRL's, our loss functions on TRL's batch."""
    from selfalign.batching import IGNORE, collate_pairs, encode_pair
    from selfalign.training.objectives import dpo_loss
    from selfalign.training.pairwise import concatenated_logps, reference_of

    policy = load_for_training(spec)
    pairs = load_pairs(spec, policy.tokenizer)
    first = pairs[: spec["batch_size"]]
    model = policy.model.eval()
    frozen = None if spec["lora_r"] else copy.deepcopy(model).requires_grad_(False)
    torch.manual_seed(spec["seed"] + 1)
    for name, p in model.named_parameters():
        if p.requires_grad and (not spec["lora_r"] or "lora_B" in name):
            p.add_(0.01 * torch.randn_like(p))

    def loss_on(model: torch.nn.Module, batch: dict) -> float:
        chosen, rejected, _, _ = concatenated_logps(model, batch)
        if frozen is not None:
            ref_c, ref_r, _, _ = concatenated_logps(frozen, batch)
        else:
            with reference_of(model) as ref:
                ref_c, ref_r, _, _ = concatenated_logps(ref, batch)
        return dpo_loss(chosen - ref_c, rejected - ref_r, BETA).mean().item()

    ours_rows = [encode_pair(policy, p, spec["max_length"]) for p in first]
    ours = loss_on(model, collate_pairs(ours_rows, policy.tokenizer.pad_token_id))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trl_trainer(policy, pairs, spec, tmp, "model", frozen)  # TRL's model: same (perturbed) weights
        trl_rows = [trainer.train_dataset[i] for i in range(len(first))]
        trl_batch = trainer.data_collator(trl_rows)
        trl_model = trainer.model.eval()
        theirs = trainer.compute_loss(trl_model, dict(trl_batch)).item()
    labels = trl_batch["input_ids"].masked_fill(trl_batch["completion_mask"] == 0, IGNORE)
    ours_on_trl = loss_on(
        trl_model,
        {"input_ids": trl_batch["input_ids"], "attention_mask": trl_batch["attention_mask"], "labels": labels},
    )
    ours_ids = [r[side]["input_ids"] for side in ("chosen", "rejected") for r in ours_rows]
    trl_ids = [r["prompt_ids"] + r[f"{side}_ids"] for side in ("chosen", "rejected") for r in trl_rows]
    if spec["max_length"]:
        trl_ids = [ids[: spec["max_length"]] for ids in trl_ids]
    return {
        "ours": ours,
        "trl": theirs,
        "ours_on_trl_batch": ours_on_trl,
        "tokens": token_agreement(policy.tokenizer, ours_ids, trl_ids),
    }


def main() -> None:
    ap = speed_parser(
        __doc__,
        model=None,
        steps=100,
        batch_size=32,
        lr=5e-4,
        max_length=None,
        lora_r=0,
        no_model="a from-scratch Llama (--hidden, --layers) on the letters task's pairs",
    )
    ap.add_argument(
        "--hidden", type=int, default=256, help="width of the from-scratch Llama used without --model (default: 256)"
    )
    ap.add_argument("--layers", type=int, default=4, help="its depth (default: 4)")
    args = ap.parse_args()
    if serve_worker(args.worker, check, train):
        return

    from selfalign.models import resolve_model_path

    with tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in vars(args).items() if k not in ("worker", "hidden", "layers")}
        if args.model is None:
            build_model(args.hidden, args.layers, tmp)
            base["model"] = tmp
        else:
            base["model"] = resolve_model_path(args.model)
        base["chat"] = args.model is not None
        loss = isolated(__file__, {**base, "impl": "check", "label": "step-0 loss check"})
        results = {
            label: isolated(__file__, {**base, "impl": impl, "reference": reference, "label": label})
            for label, (impl, reference) in CONFIGS.items()
        }
    peer = results[REFERENCE]["samples_per_s"]
    if args.model is None:
        model = f"Llama hidden {args.hidden} x {args.layers} layers (from scratch), full fine-tuning"
    elif args.lora_r:
        model = f"{args.model}, LoRA r={args.lora_r} alpha={args.lora_alpha or 2 * args.lora_r}"
    else:
        model = f"{args.model}, full fine-tuning"
    print(
        f"{args.steps} steps x {args.batch_size} pairs x {args.grad_accum} accum, {model}, "
        f"max length {args.max_length or 'unlimited'}, CPU fp32, {args.threads} threads\n"
    )
    print(speed_table(results, "samples_per_s", "samples/s", "{:.1f}", peer))
    print(
        f"\nDPO loss on the first {args.batch_size} pairs, policy perturbed away from the reference: "
        f"selfalign {loss['ours']:.5f}, TRL {loss['trl']:.5f}; our loss on TRL's batch "
        f"{loss['ours_on_trl_batch']:.5f}. Tokens: {loss['tokens']}."
    )


if __name__ == "__main__":
    main()
