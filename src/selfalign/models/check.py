"""Check a local model directory before a run starts.

Loading happens inside a stage, after the run directory exists; a missing config.json, a truncated
safetensors file or an absent tokenizer found there would leave a traceback and a half-made run. These
checks read only small JSON files and safetensors headers, so they cost milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from selfalign.errors import InputError
from selfalign.models.loading import resolve_model_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _json(file: Path, field: str) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(file, f"not valid JSON ({e.msg})", line=e.lineno, field=field) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(file, f"cannot read ({getattr(e, 'strerror', None) or e})", field=field) from None


def _json_object(file: Path, field: str) -> dict:
    data = _json(file, field)
    if not isinstance(data, dict):
        raise InputError(file, f"expected a JSON object, got {type(data).__name__}", field=field)
    return data


def check_model(path: str, field: str = "model.path") -> str:
    """Resolve `path` (see `resolve_model_path`) and, when it is a local directory, check that it holds a
    loadable checkpoint: a config (or adapter config) that parses, readable safetensors headers, listed shards
    present, and tokenizer files. A hub id is left to the loader. Returns the resolved path."""
    try:
        resolved = resolve_model_path(path)
    except InputError as e:  # it blames model.path; this path may come from elsewhere (recipe params, --verifier)
        raise InputError(e.path, e.message, line=e.line, field=field) from None
    local = Path(resolved)
    if not local.exists():
        return resolved  # a hub id
    if not local.is_dir():
        raise InputError(path, "is a file; give the model's directory (config.json, weights, tokenizer)", field=field)
    if (local / "adapter_config.json").is_file():  # a peft adapter: its base model is resolved by peft
        _json_object(local / "adapter_config.json", field)
        weights = sorted(local.glob("adapter_model*.safetensors"))
    else:
        if not (local / "config.json").is_file():
            raise InputError(path, "no config.json here: not a model directory", field=field)
        _json_object(local / "config.json", field)
        weights = sorted(local.glob("*.safetensors"))
        index = local / "model.safetensors.index.json"
        if index.is_file():
            shards = _json_object(index, field).get("weight_map", {})
            missing = sorted({s for s in shards.values() if not (local / str(s)).is_file()})
            if missing:
                raise InputError(index, f"lists shards that are missing: {', '.join(missing)}", field=field)
        if not weights and not any(local.glob("*.bin")):
            raise InputError(path, "no model weights here (*.safetensors)", field=field)
        if not any((local / f).is_file() for f in TOKENIZER_FILES):
            raise InputError(path, f"no tokenizer here (one of {', '.join(TOKENIZER_FILES)})", field=field)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (local / name).is_file():
                _json_object(local / name, field)
    for w in weights:
        try:
            with safe_open(str(w), framework="numpy"):  # parses and bounds-checks the header only
                pass
        except (SafetensorError, OSError) as e:
            raise InputError(w, f"corrupt safetensors file ({e})", field=field) from None
    return resolved


def check_lora_targets(path: str, targets: list[str] | str, field: str = "model.lora.target_modules") -> None:
    """Refuse LoRA target modules that name no module of the model, which peft would only report when the first
    training stage starts. The model is built on the meta device (no weights); hub ids and regexes are left
    to peft."""
    local = Path(resolve_model_path(path))
    if isinstance(targets, str) or not (local / "config.json").is_file():
        return
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(local))
    except Exception:  # an unusual architecture: peft will judge the targets itself
        return
    names = [n for n, _ in model.named_modules()]
    if not any(n == t or n.endswith(f".{t}") for t in targets for n in names):
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names if n and not n.rsplit(".", 1)[-1].isdigit()})
        raise InputError(
            "<config>", f"no module of {path} matches {targets} (its modules: {', '.join(leaves)})", field=field
        )
