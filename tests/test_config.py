import pytest

from selfalign.config import load_config, validate_params
from selfalign.errors import InputError
from selfalign.recipes.star import StarParams


def write(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "recipe: star\ntraining:\n  lr: 0.01\n"), ["training.steps=7", "seed=3"])
    assert cfg.training.lr == 0.01 and cfg.training.steps == 7 and cfg.seed == 3
    assert cfg.task.name == "arithmetic"


def test_unknown_key_names_file_line_and_field(tmp_path):
    path = write(tmp_path, "recipe: star\ntraining:\n  lr: 0.01\n  learning_rate: 3\n")
    with pytest.raises(InputError) as e:
        load_config(path)
    msg = str(e.value)
    assert "cfg.yaml, line 4" in msg and "training.learning_rate" in msg and "unknown key" in msg


def test_wrong_type_names_field(tmp_path):
    with pytest.raises(InputError, match=r"line 3: field 'sampling.n'"):
        load_config(write(tmp_path, "recipe: star\nsampling:\n  n: many\n"))


def test_bad_override(tmp_path):
    with pytest.raises(InputError, match="sampling.tempreature"):
        load_config(write(tmp_path, "recipe: star\n"), ["sampling.tempreature=0.5"])


def test_task_discriminator(tmp_path):
    cfg = load_config(write(tmp_path, "recipe: star\ntask:\n  name: jsonl\n  train_path: x.jsonl\n"))
    assert cfg.task.name == "jsonl"
    with pytest.raises(InputError, match="task"):
        load_config(write(tmp_path, "recipe: star\ntask:\n  name: chess\n"))


def test_recipe_params_validated(tmp_path):
    cfg = load_config(write(tmp_path, "recipe: star\nparams:\n  rounds: 2\n  rationalise: true\n"))
    with pytest.raises(InputError, match="params.rationalise.*unknown key"):
        validate_params(StarParams, cfg)
    cfg = load_config(write(tmp_path, "recipe: star\nparams:\n  rounds: 2\n"))
    assert validate_params(StarParams, cfg).rounds == 2
