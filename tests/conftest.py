"""Shared fixtures: a tiny random model saved to disk and loaded by path, like a user's model."""

from __future__ import annotations

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
