import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfalign.config import LoraConfig
from selfalign.errors import InputError
from selfalign.models.loading import load_policy, resolve_model_path
from selfalign.models.tokenizer import char_tokenizer


def test_char_tokenizer_round_trips_through_save_pretrained(tmp_path):
    tok = char_tokenizer("0123456789+=")
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    ids = loaded("12+3=")["input_ids"]
    assert ids[0] == loaded.bos_token_id and len(ids) == 6
    assert loaded.decode(ids, skip_special_tokens=True) == "12+3="
    assert loaded.padding_side == "left" and loaded.pad_token_id == tok.pad_token_id


def test_load_by_path_like_any_hf_model(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir))
    assert isinstance(policy.model, type(AutoModelForCausalLM.from_pretrained(tiny_model_dir)))
    assert not policy.uses_chat_template
    ids = policy.encode_prompt("12+3=")
    assert ids[0] == policy.tokenizer.bos_token_id
    assert policy.encode_completion("4")[-1] == policy.tokenizer.eos_token_id


def test_chat_template_is_applied_when_present(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}={% endfor %}"
    tok.save_pretrained(tmp_path)
    for f in tiny_model_dir.iterdir():
        if f.name.startswith(("config", "model", "generation")):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    policy = load_policy(str(tmp_path))
    assert policy.uses_chat_template
    text = policy.tokenizer.decode(policy.encode_prompt("1+2"))
    assert text == "<s>1+2="


def test_lora_wraps_model_and_trains_only_adapters(tiny_model_dir):
    policy = load_policy(str(tiny_model_dir), lora=LoraConfig(r=4, alpha=8))
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="model path does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="no builtin model"):
        resolve_model_path("builtin:does-not-exist")


def test_nope_factory_uses_huge_rope_theta():
    from selfalign.models.factory import NOPE_THETA, tiny_llama

    model = tiny_llama(char_tokenizer("01"), hidden=16, layers=1, heads=2)
    assert model.config.rope_parameters["rope_theta"] == NOPE_THETA
    out = model(torch.tensor([[1, 4, 5]]))
    assert torch.isfinite(out.logits).all()
