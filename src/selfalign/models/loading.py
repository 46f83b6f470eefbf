"""Load a model by HF hub id, local path or builtin name; optional LoRA via peft.

`load(kind, path)` is the one entry point: a causal LM (`policy`), a scalar head read at the last token
(`reward`: reward models and ORMs) or a token-classification head read at each step's last token (`prm`).
A head that the checkpoint lacks is drawn fresh, so seed the RNG before loading one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from selfalign.config import LoraConfig
from selfalign.errors import InputError
from selfalign.models.gguf import GGUF_BUILTINS, converted_path

BUILTIN_PREFIX = "builtin:"


def builtin_path(name: str) -> Path:
    """A checkpoint shipped in selfalign's assets, or a GGUF builtin converted once into the cache (see gguf.py)."""
    if name in GGUF_BUILTINS:
        return converted_path(name)
    path = Path(str(resources.files("selfalign") / "assets" / name))
    if not (path / "config.json").is_file():
        shipped = [p.name for p in path.parent.iterdir() if (p / "config.json").is_file()]
        available = sorted([*shipped, *GGUF_BUILTINS])
        raise InputError("<config>", f"no builtin model '{name}' (available: {available})", field="model.path")
    return path


def resolve_model_path(path: str) -> str:
    """Map builtin:<name> to the packaged checkpoint; reject local-looking paths that do not exist."""
    if path.startswith(BUILTIN_PREFIX):
        return str(builtin_path(path[len(BUILTIN_PREFIX) :]))
    looks_local = path.startswith((".", "/", "~")) or Path(path).exists() or path.count("/") > 1
    if looks_local and not Path(path).expanduser().exists():
        raise InputError(path, "model path does not exist", field="model.path")
    return str(Path(path).expanduser()) if looks_local else path


LOAD_ERRORS = (OSError, ValueError, SafetensorError)  # what a missing or corrupt checkpoint raises


def _dtype(name: str) -> torch.dtype | str:
    return "auto" if name == "auto" else getattr(torch, name)


@dataclass
class Policy:
    """A causal LM and its tokenizer, plus how prompts are formatted for it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # what it was loaded from, recorded in provenance

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a task prompt, wrapped in the tokenizer's chat template when it has one."""
        if self.uses_chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt)["input_ids"]

    def encode_completion(self, completion: str, eos: bool = True) -> list[int]:
        """Token ids of a response, ending with EOS unless it is a partial response (eos=False)."""
        return self.tokenizer(completion, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id] * eos


def merged_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A causal LM's weights under checkpoint names, as a serving engine loads them: LoRA deltas added to new
    tensors (peft's merge_adapter and unmerge_adapter would round the base weights a little on every call).
    `state_dict`, not `named_parameters`: it keeps a tied `lm_head.weight`, and vLLM's CPU backend packs its own
    copy of the head, which goes stale if only the embeddings are sent."""
    if not hasattr(model, "peft_config"):
        return list(model.state_dict().items())
    from peft.tuners.lora import LoraLayer

    deltas = {
        f"{name}.base_layer.weight": sum(module.get_delta_weight(a) for a in module.active_adapters)
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }
    return [
        (name.removeprefix("base_model.model.").replace(".base_layer", ""), tensor + deltas.get(name, 0))
        for name, tensor in model.state_dict().items()
        if "lora_" not in name
    ]


def load_policy(
    path: str, lora: LoraConfig | None = None, dtype: str = "auto", device: str | torch.device | None = None
) -> Policy:
    """Load from a hub id, a local directory (full model or a peft adapter) or builtin:<name>."""
    resolved = resolve_model_path(path)
    is_adapter = (Path(resolved) / "adapter_config.json").is_file()
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        if is_adapter:
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(resolved, dtype=_dtype(dtype), is_trainable=True)
        else:
            model = AutoModelForCausalLM.from_pretrained(resolved, dtype=_dtype(dtype))
    except LOAD_ERRORS as e:
        raise InputError(path, f"cannot load model: {e}", field="model.path") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if lora is not None and not is_adapter:
        model = add_lora(model, lora, "CAUSAL_LM")
    if device is not None:
        model.to(device)
    return Policy(model=model, tokenizer=tokenizer, source=path)


def add_lora(model: PreTrainedModel, lora: LoraConfig, task_type: str) -> PreTrainedModel:
    """Wrap `model` in fresh LoRA adapters; task_type SEQ_CLS also keeps a reward head trainable."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    return get_peft_model(
        model,
        PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type=task_type,
        ),
    )


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_head_model(
    path: str, auto_class: type, num_labels: int, task_type: str, lora: LoraConfig | None, dtype: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A classification head (`auto_class`) on a checkpoint: a trained head, or a fresh one on a causal LM."""
    resolved = resolve_model_path(path)
    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(resolved)
        model = auto_class.from_pretrained(resolved, num_labels=num_labels, dtype=_dtype(dtype))
    except LOAD_ERRORS as e:
        raise InputError(path, f"cannot load {auto_class.__name__}: {e}", field="model.path") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if lora is not None:
        model = add_lora(model, lora, task_type)
    return model, tokenizer
