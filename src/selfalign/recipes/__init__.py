"""Recipe registry: name -> module with SUMMARY and run(loop)."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

RECIPES = (
    "star",
    "rft",
    "rest",
    "rejection",
    "dpo",
    "reward",
    "prm",
    "spa",
    "vstar",
    "grpo",
    "ppo",
    "per_step_dpo",
    "quiet_star",
    "weak_to_strong",
    "prm_active",
    "critique",
    "hir",
    "self_critique",
    "rlaif",
    "cai",
)


def get_recipe(name: str) -> ModuleType:
    from selfalign.errors import InputError

    if name not in RECIPES:
        raise InputError("<config>", f"unknown recipe '{name}' (available: {', '.join(RECIPES)})", field="recipe")
    return import_module(f"selfalign.recipes.{name}")
