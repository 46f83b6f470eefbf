"""Bad input to the CLI: every case exits 2 with a message naming the file, line or field at fault, prints no
traceback, and leaves no run directory behind (or leaves an existing directory exactly as it was).

Cases run `selfalign.cli.main` in-process (milliseconds each, once torch is imported); a few run
`python -m selfalign.cli` to check that nothing reaches the terminal as a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import selfalign
from selfalign.cli import main
from selfalign.config import load_config
from selfalign.run import Run

ARITH = Path(selfalign.__file__).parent / "assets" / "arith-tiny"
STAR = "recipe: star\n"
LETTERS = "model: {path: builtin:letters-sft}\ntask: {name: letters, n_prompts: 40, n_eval: 8}\n"
Q = '{{"question": "{}", "answer": "#### {}"}}\n'  # a jsonl task line
GOOD_TASK = Q.format("1+1?", 2) + Q.format("2+2?", 4)
PAIR = {"prompt": "abcd:", "chosen": "ab", "rejected": "xy"}
STEPS = {"prompt": "p", "completions": ["a", "b"], "labels": [True, False]}


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def jsonl_task(train: str = "{tmp}/train.jsonl", **extra: str) -> str:
    lines = [f"  {k}: {v}\n" for k, v in {"name": "jsonl", "train_path": train, **extra}.items()]
    return STAR + "task:\n" + "".join(lines)


@dataclass
class Case:
    id: str
    config: str | bytes | None  # written to {tmp}/cfg.yaml
    expect: list[str]  # all must appear in stderr; "{tmp}" is the test's directory
    extra: list[str] = field(default_factory=list)  # arguments after `run cfg.yaml --out {tmp}/out`
    files: dict[str, str | bytes] = field(default_factory=dict)  # more files under {tmp}
    setup: Callable[[Path], None] | None = None  # builds models, run dirs, ...
    argv: list[str] | None = None  # the whole command line instead of `run ...`


def corrupt_model(tmp: Path, damage: Callable[[Path], None]) -> None:
    shutil.copytree(ARITH, tmp / "model")
    damage(tmp / "model")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def existing_run(tamper: Callable[[Path], None] | None = None, overrides: tuple[str, ...] = ()) -> Callable:
    """A run directory made by this config (no stage completed), then tampered with."""

    def setup(tmp: Path) -> None:
        Run(tmp / "out", load_config(tmp / "cfg.yaml", list(overrides))).close()
        if tamper is not None:
            tamper(tmp / "out")

    return setup


def user_dir(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "config.yaml").write_text("my: own file\n")
    (tmp / "out" / "metrics.jsonl").write_text('{"mine": 1}\n')


CASES = [
    # -- the config file ------------------------------------------------------------------------------------
    Case("config-missing", None, ["absent.yaml: config file not found"], argv=["run", "{tmp}/absent.yaml"]),
    Case("config-is-dir", None, ["{tmp}: is a directory, not a config file"], argv=["run", "{tmp}"]),
    Case("config-not-utf8", b"recipe: star\nname: caf\xe9\n", ["cfg.yaml, line 2: not UTF-8 text (byte 0xe9)"]),
    Case("yaml-invalid", STAR + "sampling:\n  n: 2\n   top_p: 1\n", ["cfg.yaml, line 4: invalid YAML"]),
    Case("yaml-unclosed", STAR + "training: {lr: 1\n", ["cfg.yaml, line 3: invalid YAML"]),
    Case("yaml-tab", STAR + "\tseed: 1\n", ["cfg.yaml, line 2: invalid YAML"]),
    Case("top-level-list", "- recipe: star\n", ["cfg.yaml, line 1: top level must be a mapping of keys, not a list"]),
    Case("top-level-scalar", "star\n", ["cfg.yaml, line 1: top level must be a mapping of keys, not a str"]),
    Case("empty-config", "", ["cfg.yaml: field 'recipe': Field required"]),
    Case(
        "duplicate-key", STAR + "seed: 1\nseed: 2\n", ["cfg.yaml, line 3: duplicate key 'seed' (first given on line 2)"]
    ),
    Case(
        "duplicate-nested-key",
        STAR + "training:\n  lr: 0.1\n  lr: 0.2\n",
        ["cfg.yaml, line 4: duplicate key 'lr' (first given on line 3)"],
    ),
    Case("unknown-top-key", STAR + "rounds: 3\n", ["cfg.yaml, line 2: field 'rounds': unknown key (check spelling)"]),
    Case(
        "unknown-sampling-key",
        STAR + "sampling:\n  temprature: 0.5\n",
        ["cfg.yaml, line 3: field 'sampling.temprature': unknown key (check spelling): did you mean 'temperature'?"],
    ),
    Case("unknown-task-key", STAR + "task:\n  n_trian: 5\n", ["cfg.yaml, line 3: field 'task.n_trian': unknown key"]),
    Case("unknown-lora-key", STAR + "model:\n  lora:\n    rank: 4\n", ["line 4: field 'model.lora.rank': unknown key"]),
    Case(
        "wrong-type-int",
        STAR + "sampling:\n  n: many\n",
        ["line 3: field 'sampling.n': Input should be a valid integer"],
    ),
    Case("wrong-type-section", STAR + "training: 5\n", ["cfg.yaml, line 2: field 'training': Input should be"]),
    Case("wrong-type-list", STAR + "task:\n  train_digits: 3\n", ["line 3: field 'task.train_digits'"]),
    Case(
        "lr-negative", STAR + "training:\n  lr: -1\n", ["line 3: field 'training.lr': Input should be greater than 0"]
    ),
    Case("top-p-range", STAR + "sampling: {top_p: 1.5}\n", ["line 2: field 'sampling.top_p': Input should be less"]),
    Case("scheduler-enum", STAR + "training: {scheduler: cosin}\n", ["line 2: field 'training.scheduler'"]),
    Case("lr-inf", STAR + "training:\n  lr: .inf\n", ["line 3: field 'training.lr': Input should be a finite number"]),
    Case(
        "beta-nan", STAR + "preference: {beta: .nan}\n", ["line 2: field 'preference.beta': Input should be a finite"]
    ),
    Case("lr-1e400", STAR + "training: {lr: 1e400}\n", ["field 'training.lr': Input should be a finite number"]),
    Case("missing-recipe", "seed: 1\n", ["cfg.yaml: field 'recipe': Field required"]),
    Case("unknown-recipe", "recipe: strar\n", ["cfg.yaml, line 1: field 'recipe': unknown recipe 'strar'"]),
    Case(
        "unknown-task-name", STAR + "task: {name: chess}\n", ["cfg.yaml, line 2: field 'task.name': Input tag 'chess'"]
    ),
    Case("name-is-a-path", STAR + "name: ../elsewhere\n", ["cfg.yaml, line 2: field 'name': must be a plain name"]),
    Case(
        "dtype-without-vllm",
        STAR + "sampling: {dtype: bfloat16}\n",
        ["line 2: field 'sampling': dtype bfloat16 applies to backend vllm only (hf samples in the policy's)"],
    ),
    Case(
        "threads-without-hf",
        STAR + "sampling: {backend: openai, threads: 1, server: {url: 'http://localhost:1'}}\n",
        ["line 2: field 'sampling': threads applies to backend hf only (openai sets its own)"],
    ),
    Case("unknown-backend", STAR + "sampling: {backend: sglang}\n", ["line 2: field 'sampling.backend': Input should"]),
    # -- recipe params --------------------------------------------------------------------------------------
    Case(
        "star-param-typo",
        STAR + "params:\n  rounds: 2\n  rationalise: true\n",
        ["cfg.yaml, line 4: field 'params.rationalise': unknown key (check spelling): did you mean 'rationalize'?"],
    ),
    Case(
        "star-rounds-0", STAR + "params:\n  rounds: 0\n", ["cfg.yaml, line 3: field 'params.rounds': Input should be"]
    ),
    Case(
        "star-target",
        STAR + "task: {eval_digits: [3]}\nparams:\n  target: '9'\n",
        ["cfg.yaml, line 4: field 'params.target': no eval set '9' (have: 3)"],
    ),
    Case(
        "params-not-mapping", STAR + "params: 5\n", ["cfg.yaml, line 2: field 'params': Input should be a valid dict"]
    ),
    Case("rft-dedup", "recipe: rft\nparams: {dedup: fuzzy}\n", ["cfg.yaml, line 2: field 'params.dedup'"]),
    Case("rft-k", "recipe: rft\nparams:\n  k: -2\n", ["cfg.yaml, line 3: field 'params.k': Input should be greater"]),
    Case("rest-m", "recipe: rest\nparams:\n  max_per_problem: x\n", ["line 3: field 'params.max_per_problem'"]),
    Case(
        "rejection-gate",
        "recipe: rejection\nparams:\n  combine: safety_gated\n",
        ["cfg.yaml, line 2: field 'params': safety_gated needs one helpfulness and one safety reward model"],
    ),
    Case(
        "rejection-rm-path",
        "recipe: rejection\nparams:\n  reward_models:\n    - path: {tmp}/no-rm\n",
        ["no-rm: field 'params.reward_models[0].path': model path does not exist"],
    ),
    Case(
        "rejection-verifier-kind",
        "recipe: rejection\nparams:\n  verifier: {path: x, kind: xrm}\n",
        ["cfg.yaml, line 3: field 'params.verifier.kind'"],
    ),
    Case("dpo-no-data", "recipe: dpo\n" + LETTERS, ["cfg.yaml: field 'params.data': Field required"]),
    Case(
        "dpo-gold-pairs-on-arithmetic",
        "recipe: dpo\nparams:\n  data: seed\n",
        ["cfg.yaml, line 3: field 'params.data': task 'arithmetic' has no gold pairs"],
    ),
    Case("reward-margins", "recipe: reward\n" + LETTERS + "params: {data: seed, margins: huge}\n", ["params.margins"]),
    Case(
        "prm-label-kind",
        "recipe: prm\nparams:\n  data: a\n  eval_data: b\n  label_kind: quaternary\n",
        ["cfg.yaml, line 5: field 'params.label_kind'"],
    ),
    Case(
        "prm-no-eval", "recipe: prm\nparams:\n  data: a\n", ["cfg.yaml, line 2: field 'params.eval_data': Field requ"]
    ),
    Case("spa-k", "recipe: spa\n" + LETTERS + "params:\n  k: 1\n", ["cfg.yaml, line 5: field 'params.k'"]),
    Case(
        "spa-judge-rm",
        "recipe: spa\n" + LETTERS + "params:\n  judge: rm\n",
        ["cfg.yaml, line 4: field 'params': judge: rm needs judge_model"],
    ),
    Case(
        "spa-lambdas-empty", "recipe: spa\n" + LETTERS + "params:\n  lambdas: []\n", ["line 5: field 'params.lambdas'"]
    ),
    Case(
        "spa-lambda-inf",
        "recipe: spa\n" + LETTERS + "params:\n  lambdas: [.inf]\n",
        ["line 5: field 'params.lambdas[0]': Input should be a finite number"],
    ),
    Case(
        "spa-prompts",
        "recipe: spa\n" + LETTERS + "params:\n  iterations: 2\n  prompts_per_iteration: 100\n",
        ["cfg.yaml, line 6: field 'params.prompts_per_iteration'"],
    ),
    Case(
        "spa-seed-prompts-with-a-seed",
        "recipe: spa\n" + LETTERS + "params:\n  seed_prompts: 4\n",
        ["cfg.yaml, line 5: field 'params.seed_prompts': task letters has its own gold-labelled seed pairs"],
    ),
    Case(
        "spa-ifeval-without-seed-prompts",
        "recipe: spa\ntask: {name: ifeval, n_train: 8, n_eval: 2}\n",
        ["cfg.yaml: field 'params.seed_prompts': task ifeval has no gold-labelled seed pairs: set it"],
    ),
    Case("vstar-verifier", "recipe: vstar\nparams:\n  verifiers: [xyz]\n", ["line 3: field 'params.verifiers[0]'"]),
    Case(
        "vstar-test-set",
        "recipe: vstar\ntask: {eval_digits: [3]}\nparams:\n  test: '9'\n",
        ["cfg.yaml, line 4: field 'params.test': no eval set '9' (have: 3)"],
    ),
    # -- overrides: the command line is at fault ------------------------------------------------------------
    Case("override-no-equals", STAR, ["<command line>: override 'training.lr' is not key=value"], ["training.lr"]),
    Case(
        "override-unparseable",
        STAR,
        ["<command line>: override 'training.lr=[': cannot parse the value '['"],
        ["training.lr=["],
    ),
    Case("override-not-section", STAR, ["override 'seed.x=1': 'seed' is a setting, not a section"], ["seed.x=1"]),
    Case(
        "override-scalar-section",
        STAR + "training: {lr: 0.1}\n",
        ["override 'training.lr.x=1': 'training.lr' is"],
        ["training.lr.x=1"],
    ),
    Case(
        "override-unknown-key",
        STAR,
        ["<command line>: field 'sampling.tempreature': override 'sampling.tempreature=0.5': unknown key"],
        ["sampling.tempreature=0.5"],
    ),
    Case(
        "override-bad-value",
        STAR,
        ["<command line>: field 'training.steps': override 'training.steps=-1': Input should be greater than 0"],
        ["training.steps=-1"],
    ),
    Case(
        "override-inf", STAR, ["<command line>: field 'training.lr': override 'training.lr=.inf'"], ["training.lr=.inf"]
    ),
    Case(
        "override-params",
        STAR + "params: {rounds: 2}\n",
        ["<command line>: field 'params.rounds': override 'params.rounds=0'"],
        ["params.rounds=0"],
    ),
    Case("override-empty-key", STAR, ["<command line>: override 'a..b=1'"], ["a..b=1"]),
    Case(
        "override-duplicate-in-value",
        STAR,
        ["<command line>: override 'training={lr: 1, lr: 2}': cannot parse the value", "duplicate key 'lr'"],
        ["training={lr: 1, lr: 2}"],
    ),
    # -- models ---------------------------------------------------------------------------------------------
    Case(
        "model-missing",
        STAR + "model:\n  path: {tmp}/no-such-model\n",
        ["no-such-model: field 'model.path': model path does not exist"],
    ),
    Case(
        "builtin-missing",
        STAR + "model:\n  path: builtin:nope\n",
        ["cfg.yaml, line 3: field 'model.path': no builtin model 'nope'"],
    ),
    Case(
        "safetensors-corrupt",
        STAR + "model: {path: {tmp}/model}\n",
        ["model/model.safetensors: field 'model.path': corrupt safetensors file"],
        setup=lambda t: corrupt_model(t, lambda m: truncate(m / "model.safetensors")),
    ),
    Case(
        "config-json-missing",
        STAR + "model: {path: {tmp}/model}\n",
        ["model: field 'model.path': no config.json here"],
        setup=lambda t: corrupt_model(t, lambda m: (m / "config.json").unlink()),
    ),
    Case(
        "config-json-broken",
        STAR + "model: {path: {tmp}/model}\n",
        ["model/config.json, line 1: field 'model.path': not valid JSON"],
        setup=lambda t: corrupt_model(t, lambda m: (m / "config.json").write_text("{model_type: llama")),
    ),
    Case(
        "tokenizer-missing",
        STAR + "model: {path: {tmp}/model}\n",
        ["model: field 'model.path': no tokenizer here"],
        setup=lambda t: corrupt_model(
            t, lambda m: [(m / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")]
        ),
    ),
    Case(
        "model-is-file",
        STAR + "model: {path: {tmp}/model/model.safetensors}\n",
        ["model.safetensors: field 'model.path': is a file"],
        setup=lambda t: corrupt_model(t, lambda m: None),
    ),
    Case(
        "lora-targets",
        STAR + "model:\n  lora: {target_modules: [qproj, vproj]}\n",
        ["cfg.yaml, line 3: field 'model.lora.target_modules': no module of builtin:arith-tiny matches"],
    ),
    Case("lora-rank", STAR + "model:\n  lora: {r: 0}\n", ["cfg.yaml, line 3: field 'model.lora.r': Input should be"]),
    # -- jsonl task files -----------------------------------------------------------------------------------
    Case("task-file-missing", jsonl_task(), ["train.jsonl: file not found"]),
    Case("task-file-is-dir", jsonl_task("{tmp}"), ["{tmp}: is a directory, not a JSONL file"]),
    Case(
        "task-not-utf8",
        jsonl_task(eval_path="{tmp}/train.jsonl"),
        ["train.jsonl, line 2: not UTF-8 text (byte 0xff"],
        files={"train.jsonl": GOOD_TASK.encode().replace(b"2+2", b"2\xff2")},
    ),
    Case(
        "task-bad-json",
        jsonl_task(),
        ["train.jsonl, line 2: not valid JSON"],
        files={"train.jsonl": Q.format("1+1?", 2) + '{"question": 1+1}\n'},
    ),
    Case(
        "task-not-object",
        jsonl_task(),
        ["train.jsonl, line 1: expected a JSON object, got list"],
        files={"train.jsonl": "[1, 2]\n"},
    ),
    Case(
        "task-missing-field",
        jsonl_task(),
        ["train.jsonl, line 2: field 'answer': missing required field"],
        files={"train.jsonl": Q.format("1+1?", 2) + '{"question": "2+2?"}\n'},
    ),
    Case(
        "task-duplicate-id",
        jsonl_task(),
        ["train.jsonl, line 2: field 'id': duplicate id 'q1' (first on line 1)"],
        files={
            "train.jsonl": jsonl(
                {"id": "q1", "question": "a", "answer": "#### 1"}, {"id": "q1", "question": "b", "answer": "#### 2"}
            )
        },
    ),
    Case(
        "task-duplicate-question",
        jsonl_task(),
        ["train.jsonl, line 3: field 'question': duplicate question (first on line 1)"],
        files={"train.jsonl": GOOD_TASK + Q.format("1+1?", 2)},
    ),
    Case("task-empty-file", jsonl_task(), ["train.jsonl: file has no records"], files={"train.jsonl": "\n"}),
    Case(
        "task-no-answer",
        jsonl_task(),
        ["train.jsonl, line 1: field 'answer': no final answer matches"],
        files={"train.jsonl": '{"question": "1+1?", "answer": "two"}\n'},
    ),
    Case(
        "task-empty-question",
        jsonl_task(),
        ["train.jsonl, line 1: field 'question': must be a non-empty string"],
        files={"train.jsonl": '{"question": " ", "answer": "#### 2"}\n'},
    ),
    Case(
        "task-template-placeholder",
        jsonl_task(prompt_template="'Q: {questionz}'"),
        ["cfg.yaml, line 5: field 'task.prompt_template': unknown placeholder {questionz} (allowed: {question})"],
    ),
    Case(
        "task-template-brace",
        jsonl_task(prompt_template="'Q: {question'"),
        ["cfg.yaml, line 5: field 'task.prompt_template': not a valid template"],
    ),
    Case(
        "task-hint-no-answer",
        jsonl_task(hint_template="'Q: {question}'"),
        ["cfg.yaml, line 5: field 'task.hint_template': lacks the {answer} placeholder"],
    ),
    Case(
        "task-bad-regex",
        jsonl_task(answer_pattern="'(['"),
        ["cfg.yaml, line 5: field 'task.answer_pattern': invalid regex"],
    ),
    Case(
        "task-no-eval-set",
        jsonl_task(),
        ["cfg.yaml, line 2: field 'task.eval_path': the task has no held-out problems", "; set task.eval_path"],
        files={"train.jsonl": GOOD_TASK},
    ),
    # -- preference pairs (dpo) -----------------------------------------------------------------------------
    *[
        Case(
            f"pairs-{name}",
            "recipe: dpo\n" + LETTERS + "params: {data: {tmp}/pairs.jsonl}\n",
            [f"pairs.jsonl, line {line}: {msg}"],
            files={"pairs.jsonl": jsonl(PAIR, *rows)},
        )
        for name, rows, line, msg in [
            ("missing-field", [{"prompt": "a", "chosen": "b"}], 2, "field 'rejected': missing required field"),
            ("empty-completion", [{**PAIR, "chosen": " "}], 2, "field 'chosen': empty completion"),
            ("margin", [{**PAIR, "margin": "big"}], 2, "field 'margin': must be a number"),
            ("epsilon", [{**PAIR, "epsilon": 1.5}], 2, "field 'epsilon': must lie in [0.0, 1.0)"),
            ("strength", [{**PAIR, "strength": "huge"}], 2, "field 'strength': must be one of"),
        ]
    ],
    Case(
        "pairs-all-identical",
        "recipe: dpo\n" + LETTERS + "params: {data: {tmp}/pairs.jsonl}\n",
        ["pairs.jsonl: no usable preference pairs (skipped: {'identical chosen and rejected': 1})"],
        files={"pairs.jsonl": jsonl({**PAIR, "rejected": PAIR["chosen"]})},
    ),
    # -- stepwise records (prm) -----------------------------------------------------------------------------
    *[
        Case(
            f"stepwise-{name}",
            "recipe: prm\nparams:\n  data: {tmp}/steps.jsonl\n  eval_data: {tmp}/steps.jsonl\n" + kind,
            [f"steps.jsonl, line 2: field '{fld}'"],
            files={"steps.jsonl": jsonl({**STEPS, "labels": [1, 0]} if kind else STEPS, row)},
        )
        for name, row, fld, kind in [
            ("label-count", {**STEPS, "labels": [True]}, "labels", ""),
            ("ternary-label", {**STEPS, "labels": [1, 2]}, "labels", "  label_kind: ternary\n"),
            ("no-steps", {**STEPS, "completions": [], "labels": []}, "completions", ""),
            ("prompt-type", {**STEPS, "prompt": 5}, "prompt", ""),
        ]
    ],
    # -- difficulty that cannot be drawn --------------------------------------------------------------------
    Case(
        "train-digits-0", STAR + "task:\n  train_digits: [0]\n", ["line 3: field 'task.train_digits[0]': Input should"]
    ),
    Case("eval-digits-0", STAR + "task:\n  eval_digits: [0]\n", ["line 3: field 'task.eval_digits[0]': Input should"]),
    Case("digits-27", STAR + "task: {train_digits: [27]}\n", ["field 'task.train_digits[0]': Input should be less"]),
    Case(
        "eval-digits-empty", STAR + "task: {eval_digits: []}\n", ["field 'task.eval_digits': List should have at least"]
    ),
    Case(
        "digits-repeated",
        STAR + "task: {train_digits: [3, 3]}\n",
        ["field 'task.train_digits': lists 3 more than once"],
    ),
    Case(
        "curriculum-too-long",
        STAR + "task:\n  train_digits: [20]\n  grow_digits: 5\nparams: {rounds: 3}\n",
        ["cfg.yaml, line 4: field 'task.grow_digits': 3 rounds growing train_digits", "reach 30-digit sums"],
    ),
    # -- the run directory (--out) --------------------------------------------------------------------------
    Case(
        "out-is-file",
        STAR,
        ["out: field '--out': exists and is not a directory"],
        files={"out": "my notes\n"},
    ),
    Case(
        "out-user-dir",
        STAR,
        ["out: field '--out': is not empty and holds no selfalign run (found config.yaml, metrics.jsonl)"],
        setup=user_dir,
    ),
    Case(
        "out-under-file",
        STAR,
        ["field '--out': cannot create the run directory: Not a directory"],
        files={"afile": "x\n"},
        argv=["run", "{tmp}/cfg.yaml", "--out", "{tmp}/afile/run"],
    ),
    Case(
        "run-exists",
        STAR,
        ["out already holds a run; pass --resume to continue it or pick another --out"],
        setup=existing_run(),
    ),
    Case(
        "resume-corrupt-manifest",
        STAR,
        ["out/manifest.json, line 1: corrupt manifest", "cannot resume"],
        ["--resume"],
        setup=existing_run(lambda out: (out / "manifest.json").write_text('{"stages": {')),
    ),
    Case(
        "resume-manifest-not-a-manifest",
        STAR,
        ["out/manifest.json: not a selfalign manifest"],
        ["--resume"],
        setup=existing_run(lambda out: (out / "manifest.json").write_text('{"stages": []}')),
    ),
    Case(
        "resume-corrupt-config",
        STAR,
        ["out/config.yaml, line 2: frozen run config is not valid YAML", "cannot resume"],
        ["--resume"],
        setup=existing_run(lambda out: (out / "config.yaml").write_text("recipe: [\n")),
    ),
    Case(
        "resume-changed-config",
        STAR,
        ["config differs from the frozen run config", "training.lr: 0.001 -> 0.002"],
        ["--resume", "training.lr=0.002"],
        setup=existing_run(),
    ),
    # -- eval and report --------------------------------------------------------------------------------------
    Case(
        "eval-verifier-spec",
        None,
        ["<command line>: field '--verifier': expected KIND:PATH"],
        argv=["eval", "--model", "builtin:arith-tiny", "--out", "{tmp}/out", "--verifier", "rm:x"],
    ),
    Case(
        "eval-verifier-missing",
        None,
        ["no-orm: field '--verifier': model path does not exist"],
        argv=["eval", "--model", "builtin:arith-tiny", "--out", "{tmp}/out", "--verifier", "orm:{tmp}/no-orm"],
    ),
    Case(
        "eval-samples-bad",
        None,
        ["samples.jsonl, line 1: field 'problem_id': missing required field"],
        files={"samples.jsonl": jsonl({"id": "a#0", "prompt": "p", "completion": "c"})},
        argv=["eval", "--model", "builtin:arith-tiny", "--out", "{tmp}/out", "--verifier", "orm:builtin:arith-tiny"]
        + ["--samples", "{tmp}/samples.jsonl"],
    ),
    Case(
        "eval-samples-no-verifier",
        None,
        ["<command line>: field '--samples': samples are scored by verifiers"],
        files={"samples.jsonl": "\n"},
        argv=["eval", "--model", "builtin:arith-tiny", "--out", "{tmp}/out", "--samples", "{tmp}/samples.jsonl"],
    ),
    Case(
        "eval-model-missing",
        None,
        ["no-model: field '--model': model path does not exist"],
        argv=["eval", "--model", "{tmp}/no-model", "--out", "{tmp}/out"],
    ),
    Case(
        "eval-set",
        None,
        ["<command line>: field '--set': no eval set '9' (have: 5, 6)"],
        argv=["eval", "--model", "builtin:arith-tiny", "--out", "{tmp}/out", "--verifier", "orm:builtin:arith-tiny"]
        + ["--set", "9"],
    ),
    Case(
        "eval-bad-override",
        None,
        ["<command line>: field 'task.n_eval': override 'task.n_eval=0'"],
        argv=["eval", "--model", "builtin:arith-tiny", "--out", "{tmp}/out", "task.n_eval=0"],
    ),
    Case(
        "report-no-metrics",
        None,
        ["out: no metrics.jsonl here; is this a run directory?"],
        setup=lambda t: (t / "out").mkdir(),
        argv=["report", "{tmp}/out"],
    ),
    Case("report-no-dir", None, ["out: no such run directory"], argv=["report", "{tmp}/out"]),
    Case(
        "report-bad-metrics",
        None,
        ["metrics.jsonl, line 2: field 'accuracy': must map each eval set to a number"],
        setup=lambda t: (
            user_dir(t),
            (t / "out" / "metrics.jsonl").write_text(
                jsonl({"round": 0, "accuracy": {"3": 0.5}}, {"round": 1, "accuracy": "high"})
            ),
        ),
        argv=["report", "{tmp}/out"],
    ),
]


def fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


def snapshot(path: Path) -> dict[str, bytes | None] | None:
    """Every file (bytes) and directory (None) under `path`, hidden ones included; None if it does not exist."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def prepare(case: Case, tmp: Path) -> list[str]:
    if case.config is not None:
        text = case.config if isinstance(case.config, bytes) else fill(case.config, tmp).encode()
        (tmp / "cfg.yaml").write_bytes(text)
    for name, content in case.files.items():
        (tmp / name).write_bytes(content if isinstance(content, bytes) else fill(content, tmp).encode())
    if case.setup is not None:
        case.setup(tmp)
    argv = case.argv or ["run", "{tmp}/cfg.yaml", "--out", "{tmp}/out", *case.extra]
    return [fill(a, tmp) for a in argv]


def test_enough_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, capsys):
    argv = prepare(case, tmp_path)
    out = tmp_path / "out"
    before = snapshot(out)
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    for expected in case.expect:
        assert fill(expected, tmp_path) in err, err
    assert err.startswith("selfalign: error: ") and "Traceback" not in err + captured.out
    assert snapshot(out) == before  # no run directory left behind; an existing --out untouched
    if before is None:
        assert not out.exists() and not (tmp_path / "afile" / "run").exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_is_refused_before_the_run(tmp_path, capsys):
    expect = ["field 'sampling.backend': vLLM is not installed"]
    case = Case("vllm-missing", STAR + "sampling: {backend: vllm}\n", expect)
    test_bad_input(case, tmp_path, capsys)


def test_params_error_names_file_and_line_through_validate_params(tmp_path):
    """validate_params(schema, cfg) keeps its signature and now points into the YAML (or at the override)."""
    from selfalign.config import validate_params
    from selfalign.errors import InputError
    from selfalign.recipes.star import StarParams

    path = tmp_path / "cfg.yaml"
    path.write_text("recipe: star\nparams:\n  rounds: 2\n  patience: 0\n")
    with pytest.raises(InputError) as e:
        validate_params(StarParams, load_config(path))
    assert (e.value.path, e.value.line, e.value.field) == (str(path), 4, "params.patience")
    with pytest.raises(InputError) as e:
        validate_params(StarParams, load_config(path, ["params.patience=1", "params.rounds=-1"]))
    assert (e.value.path, e.value.line, e.value.field) == ("<command line>", None, "params.rounds")
    assert "override 'params.rounds=-1'" in str(e.value)


def test_outputs_respect_the_umask(tmp_path):
    from selfalign.records import write_jsonl

    old = os.umask(0o027)
    try:
        write_jsonl(tmp_path / "a.jsonl", [{"x": 1}])
    finally:
        os.umask(old)
    assert (tmp_path / "a.jsonl").stat().st_mode & 0o777 == 0o640


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "selfalign.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["config-not-utf8", "override-unparseable", "safetensors-corrupt", "report-bad-metrics"]
)
def test_no_traceback_reaches_the_terminal(name, tmp_path):
    case = next(c for c in CASES if c.id == name)
    argv = prepare(case, tmp_path)
    before = snapshot(tmp_path / "out")
    r = cli(*argv)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = [line for line in r.stderr.splitlines() if line.startswith("selfalign:")]
    assert len(lines) == 1 and fill(case.expect[0], tmp_path) in lines[0], r.stderr
    assert snapshot(tmp_path / "out") == before
