"""Validated run configs: YAML plus key=value overrides, with errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfalign.errors import InputError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(Strict):
    r: int = Field(8, gt=0, description="LoRA rank")
    alpha: int = Field(16, gt=0, description="LoRA scaling numerator")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="module names, or 'all-linear'")


class ModelConfig(Strict):
    path: str = Field(
        "builtin:arith-tiny",
        description="HF hub id, local directory, or builtin:<name> for a checkpoint shipped with selfalign",
    )
    lora: LoraConfig | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class ArithmeticTaskConfig(Strict):
    name: Literal["arithmetic"] = "arithmetic"
    train_digits: list[int] = Field([6], description="operand lengths of the training prompts")
    eval_digits: list[int] = Field([5, 6], description="operand lengths of the held-out eval sets")
    n_train: int = Field(400, gt=0, description="training prompts per difficulty per round")
    n_eval: int = Field(100, gt=0, description="held-out problems per difficulty")
    grow_digits: int = Field(
        0, ge=0, description="add this many digits to train_digits each round (a curriculum, Lee et al. 2025)"
    )


class JsonlTaskConfig(Strict):
    name: Literal["jsonl"]
    train_path: str = Field(description="JSONL with question/answer fields")
    eval_path: str | None = Field(None, description="held-out JSONL (same schema); defaults to none")
    question_field: str = "question"
    answer_field: str = "answer"
    answer_pattern: str = Field(
        r"####\s*(-?[\d,\.]+)", description="regex whose group 1 extracts the final answer (GSM8K style)"
    )
    prompt_template: str = Field("Question: {question}\nAnswer:", description="format string for prompts")
    hint_template: str = Field(
        "Question: {question} (answer: {answer})\nAnswer:", description="prompt used for rationalization"
    )


class LettersTaskConfig(Strict):
    name: Literal["letters"]
    n_prompts: int = Field(4000, gt=0, description="training prompt pool (seed + unlabelled)")
    seed_fraction: float = Field(0.03, gt=0, le=1, description="share of the pool that comes with a gold pair")
    n_eval: int = Field(200, gt=0, description="held-out prompts (and held-out gold pairs)")


TaskConfig = Annotated[ArithmeticTaskConfig | JsonlTaskConfig | LettersTaskConfig, Field(discriminator="name")]


class SamplingConfig(Strict):
    backend: Literal["hf", "vllm"] = "hf"
    n: int = Field(4, gt=0, description="samples per prompt")
    temperature: float = Field(0.7, ge=0, description="0 means greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(160, gt=0)
    batch_size: int = Field(128, gt=0, description="sequences per generate call")


class TrainingConfig(Strict):
    lr: float = Field(1e-3, gt=0)
    steps: int = Field(200, gt=0, description="optimizer steps (recipes may scale this per round)")
    batch_size: int = Field(32, gt=0, description="per-device micro-batch")
    grad_accum: int = Field(1, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    scheduler: Literal["linear", "cosine", "constant_with_warmup", "warmup_stable_decay"] = "cosine"
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 where the hardware supports it"
    )
    log_every: int = Field(10, gt=0)
    group_by_length: bool = Field(
        True,
        description="batch examples of similar length together (less padding, same data per epoch); verifier"
        " training ignores it, since its labels depend on length",
    )


class PreferenceConfig(Strict):
    loss: Literal["sigmoid", "robust", "ipo", "dpo_nll"] = Field(
        "sigmoid",
        description="sigmoid = DPO (cDPO with label_smoothing > 0, soft labels with a per-pair `epsilon`); "
        "robust = robust DPO; ipo = IPO on token-averaged log-ratios; dpo_nll = iterative RPO (DPO + NLL)",
    )
    beta: float = Field(0.1, gt=0, description="DPO beta; IPO tau")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cDPO epsilon (sigmoid) or flip rate (robust, < 0.5)")
    nll_alpha: float = Field(1.0, ge=0, description="weight of the chosen-response NLL in dpo_nll")
    reference: Literal["precompute", "model"] = Field(
        "precompute",
        description="precompute = reference log-probs computed once before training; model = a frozen reference "
        "forward each step (with LoRA: the base with adapters disabled, no second copy)",
    )


class RefinementConfig(Strict):
    """SPA self-refinement; see selfalign.training.spa."""

    alpha: float = Field(0.1, ge=0, lt=1, description="label smoothing given to low-confidence pairs")
    quantile: float = Field(0.1, gt=0, lt=1, description="share of pairs treated as low-confidence (K%)")
    threshold: Literal["rolling", "global"] = Field(
        "rolling",
        description="rolling = percentile of the last `window` confidences (official code); "
        "global = percentile of every confidence seen so far in training",
    )
    window: int = Field(50, gt=1, description="rolling window length, in pairs")
    warmup: float = Field(0.2, ge=0, le=1, description="share of steps before smoothing switches on")
    lam: float = Field(0.0, ge=0, description="DND logit extrapolation lambda (0 = off)")


class EvalConfig(Strict):
    k: int = Field(1, gt=0, description="samples per eval prompt; >1 adds pass@k and maj@k")
    temperature: float = Field(0.0, ge=0, description="0 = greedy accuracy")
    batch_size: int = Field(256, gt=0)


class RunConfig(Strict):
    recipe: str = Field(description="recipe name; see `selfalign recipes`")
    name: str | None = Field(None, description="run name (default: recipe)")
    seed: int = 0
    model: ModelConfig = ModelConfig()
    task: TaskConfig = ArithmeticTaskConfig()
    sampling: SamplingConfig = SamplingConfig()
    training: TrainingConfig = TrainingConfig()
    preference: PreferenceConfig = PreferenceConfig()
    eval: EvalConfig = EvalConfig()
    params: dict[str, Any] = Field(default_factory=dict, description="recipe-specific parameters")


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each YAML key path to its 1-based line, so validation errors can point into the file."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                path = (*prefix, str(k.value))
                lines[path] = k.start_mark.line + 1
                walk(v, path)

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise InputError("<command line>", f"override '{item}' is not key=value")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw else ""


def _validate(model: type[BaseModel], data: dict, source: str, lines: dict[tuple[str, ...], int]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(str(p) for p in err["loc"] if not isinstance(p, int))
        line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
        msg = "unknown key (check spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        extra = f" ({len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise InputError(source, msg + extra, line=line, field=".".join(loc)) from None


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Load a run config from YAML (or `base`), apply dotted key=value overrides and validate."""
    data: dict[str, Any] = dict(base or {})
    lines: dict[tuple[str, ...], int] = {}
    source = "<config>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise InputError(path, "config file not found")
        text = path.read_text()
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise InputError(path, f"invalid YAML: {e}", line=mark.line + 1 if mark else None) from None
        if not isinstance(loaded, dict):
            raise InputError(path, "top level must be a mapping of keys")
        data.update(loaded)
        lines = _key_lines(text)
    for item in overrides:
        keys, value = _parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise InputError("<command line>", f"cannot set '{item}': '{k}' is not a section")
        node[keys[-1]] = value
    if isinstance(data.get("task"), dict):
        data["task"].setdefault("name", "arithmetic")
    return _validate(RunConfig, data, source, lines)


def validate_params(model: type[BaseModel], cfg: RunConfig, source: str = "<config>") -> Any:
    """Validate the recipe's `params:` section against the recipe's own schema."""
    try:
        return model.model_validate(cfg.params)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(["params", *(str(p) for p in err["loc"])])
        msg = "unknown key (check spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        raise InputError(source, msg, field=loc) from None
