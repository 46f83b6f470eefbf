"""Every shipped config parses and passes its recipe's checks (params, task, templates, constitution files); the
few that need a user's data or another run's output are refused with a clear error until they exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfalign.config import load_config, validate_params
from selfalign.errors import InputError
from selfalign.recipes import get_recipe
from selfalign.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
NEEDS = {  # config -> what the refusal names
    "gsm8k_style.yaml": "data/train.jsonl: file not found",
    "ppo_letters.yaml": "runs/rm-letters/round-001/checkpoint",
    "rejection_letters.yaml": "runs/rm/round-001/checkpoint",
    "prm.yaml": "field 'params.data'",
}


def check(path: Path) -> None:
    cfg = load_config(path, [])
    recipe = get_recipe(cfg.recipe)
    params = validate_params(recipe.PARAMS, cfg)
    if (validate := getattr(recipe, "validate", None)) is not None:
        validate(params, make_task(cfg.task), cfg)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_config_is_valid(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs name their files relative to the repository root
    if path.name in NEEDS:
        with pytest.raises(InputError, match=NEEDS[path.name]):
            check(path)
    else:
        check(path)
