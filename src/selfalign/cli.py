"""The `selfalign` command line.

Every input a run needs (config, recipe params, task data, model files) is checked before the run directory is
created, and any user error, Ctrl-C or SIGTERM ends in a one-line message, never a traceback. A run that fails
or is interrupted before its first stage completes is removed again, so the same command can simply be re-run;
one with completed stages is kept and the message gives the exact command that resumes it.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# OpenMP threads that spin while they wait make torch 5-20x slower when another process is busy on the same few
# cores (a SmolLM2-135M training step on 2 shared cores: 17.5 s spinning, 1.3 s passive). Only takes effect
# before torch loads its OpenMP runtime, which is why it is here; OMP_WAIT_POLICY=ACTIVE in the environment wins,
# and so does OMP_NUM_THREADS (torch's default otherwise: one thread per physical core).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _offline_without_hub() -> None:
    """Without a route to the Hugging Face hub, a hub id (a model, or an `hf:` dataset) takes 24 s of retries to
    fail: then huggingface_hub and datasets are told they are offline (read when they are imported, hence before any
    command runs), so it fails at once and files already cached still load. Flags set in the environment win."""
    if "HF_HUB_OFFLINE" in os.environ or "HF_DATASETS_OFFLINE" in os.environ:
        return
    host = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"


OVERRIDES_HELP = "dotted key=value overrides applied on top of the config, e.g. training.lr=3e-4 params.rounds=3"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) exactly like Ctrl-C."""


@dataclass
class Session:
    """What one command has opened: the run directory to clean up, or to point to, when it fails."""

    argv: list[str]
    out: Path | None = None
    run: Any = None  # selfalign.run.Run, once created


def _session(args: argparse.Namespace) -> Session:
    """The command's Session (main makes one; a direct call of a cmd_* function gets a fresh one)."""
    if getattr(args, "session", None) is None:
        args.session = Session([])
    return args.session


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _model_paths(value: Any, loc: tuple) -> Iterator[tuple[str, str]]:
    """(field, path) of every model directory named in recipe params: `...path` and `..._model` strings."""
    from selfalign.config import field_name

    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        if isinstance(v, str) and isinstance(k, str) and (k == "path" or k.endswith("_model")):
            yield field_name((*loc, k)), v
        else:
            yield from _model_paths(v, (*loc, k))


def _check_inputs(cfg, params=None, evaluates: bool = True):
    """Build the task (reading its data) and check everything else a run reads that can be checked without a
    model: held-out problems to evaluate on, an attainable difficulty, model directories. Returns the task."""
    from selfalign.errors import InputError
    from selfalign.models.check import check_lora_targets, check_model
    from selfalign.tasks import make_task
    from selfalign.tasks.arithmetic import check_rounds

    task = make_task(cfg.task)
    if evaluates and not any(task.eval_sets().values()):
        jsonl = cfg.task.name == "jsonl"
        msg = "the task has no held-out problems to evaluate on" + ("; set task.eval_path" if jsonl else "")
        raise InputError("<config>", msg, field="task.eval_path" if jsonl else "task")
    if cfg.task.name == "arithmetic" and params is not None:
        check_rounds(cfg.task, getattr(params, "rounds", None) or getattr(params, "iterations", None) or 1)
    check_model(cfg.model.path)
    if cfg.model.lora is not None:
        check_lora_targets(cfg.model.path, cfg.model.lora.target_modules)
    if params is not None:
        for field, path in _model_paths(params.model_dump(), ("params",)):
            check_model(path, field)
    return task


def _open(cfg, task, resume: bool, out: str | Path, session: Session, params=None):
    """Create (or reopen, with `resume`) the run directory, locked for this process; the Loop over it."""
    from selfalign.loop import Loop
    from selfalign.run import Run

    session.out = Path(out)
    session.run = Run(out, cfg, resume=resume, command=shlex.join(["selfalign", *session.argv]))
    return Loop(cfg=cfg, run=session.run, task=task, params=params)


def _prepare(cfg, resume: bool, out: str | Path, session: Session):
    """Validate everything (recipe, params, task data, model files) before the run dir is created."""
    from selfalign.config import located, validate_params
    from selfalign.recipes import get_recipe

    session.out = Path(out)
    with located(cfg):  # checks that name only a config field get the config's file and line
        recipe = get_recipe(cfg.recipe)
        params = validate_params(recipe.PARAMS, cfg)
        # reward and prm score held-out pairs or steps, never the task's problems
        task = _check_inputs(cfg, params, evaluates=getattr(recipe, "EVALUATES_TASK", True))
        if (validate := getattr(recipe, "validate", None)) is not None:
            validate(params, task, cfg)
    return recipe, _open(cfg, task, resume, out, session, params)


def cmd_run(args: argparse.Namespace) -> None:
    from selfalign.config import load_config

    cfg = load_config(args.config, args.overrides)
    out = args.out or Path("runs") / (cfg.name or cfg.recipe)
    recipe, loop = _prepare(cfg, args.resume, out, _session(args))
    recipe.run(loop)
    _finish(loop)


def _finish(loop) -> None:
    from selfalign.report.html import write_report
    from selfalign.report.tables import print_metrics

    if loop.run.state.is_main_process:
        print_metrics(loop.run.root)
        page = write_report(loop.run.root)
        print(f"run directory: {loop.run.root}\nreport: {page}")


def demo_config_path() -> Path:
    return Path(str(resources.files("selfalign") / "configs" / "demo.yaml"))


def cmd_demo(args: argparse.Namespace) -> None:
    from selfalign.config import load_config

    cfg = load_config(demo_config_path(), args.overrides)
    out = args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    recipe, loop = _prepare(cfg, args.resume, out, _session(args))
    start = time.time()
    recipe.run(loop)
    _finish(loop)
    print(f"demo finished in {time.time() - start:.0f}s")


def cmd_eval(args: argparse.Namespace) -> None:
    from selfalign.config import COMMAND_LINE, load_config, located
    from selfalign.errors import InputError
    from selfalign.models.check import check_model
    from selfalign.verifier_eval import parse_verifiers, read_samples, verifier_eval

    # (key, value): --model is a path, taken as given rather than parsed as a YAML value
    overrides = [("model.path", args.model), *args.overrides]
    cfg = load_config(args.config, overrides, base={"recipe": "eval"} if args.config is None else None)
    with located(cfg):
        try:
            verifiers = parse_verifiers(args.verifier)
        except InputError as e:  # a missing verifier path is blamed on model.path; it came from --verifier
            if e.field != "model.path":
                raise
            raise InputError(e.path, e.message, line=e.line, field="--verifier") from None
        for _, path in verifiers.values():
            check_model(path, "--verifier")
        if args.samples is not None and not verifiers:
            raise InputError(COMMAND_LINE, "samples are scored by verifiers: give --verifier too", field="--samples")
        reference = check_model(args.reference or args.model, "--reference" if args.reference else "--model")
        samples = None if args.samples is None else read_samples(args.samples)  # fails before the run dir exists
        task = _check_inputs(cfg)
        sets = task.eval_sets()
        if verifiers and samples is None and (args.set or list(sets)[-1]) not in sets:
            raise InputError(COMMAND_LINE, f"no eval set '{args.set}' (have: {', '.join(sets)})", field="--set")
    out = args.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}"
    loop = _open(cfg, task, args.resume, out, _session(args))
    extra = {}
    if verifiers:
        extra = verifier_eval(loop, verifiers, reference, samples, args.set, args.n, args.temperature)
    loop.evaluate(0, loop.base, **extra)
    _finish(loop)


def cmd_report(args: argparse.Namespace) -> None:
    from selfalign.report.html import write_report

    print(write_report(args.run_dir))


def cmd_export(args: argparse.Namespace) -> None:
    from selfalign.errors import InputError
    from selfalign.records import read_jsonl, write_parquet

    root = Path(args.run_dir)
    if not (root / "manifest.json").is_file():
        raise InputError(root, "not a run directory (no manifest.json)")
    out = Path(args.to) if args.to else root / "parquet"
    written, empty = 0, []
    for path in sorted(p for p in root.rglob("*.jsonl") if out not in p.parents):
        if not (records := read_jsonl(path)):
            empty.append(str(path.relative_to(root)))  # a parquet file needs a schema, which no record gives
            continue
        write_parquet(out / path.relative_to(root).with_suffix(".parquet"), records, path)
        written += 1
    print(f"{written} JSONL files of {root} written as parquet under {out}")
    if empty:
        print(f"empty, not written: {', '.join(empty)}")


def cmd_recipes(args: argparse.Namespace) -> None:
    from selfalign.recipes import RECIPES, get_recipe

    for name in RECIPES:
        print(f"{name:<10} {get_recipe(name).SUMMARY}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfalign",
        description="Self-improving LLM post-training: a model generates its own data, a verifier filters "
        "it, the model trains on the result, and the loop repeats. Every run is a resumable directory.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a recipe from a YAML config", description="Run a recipe from a YAML config.")
    p.add_argument("config", help="recipe config YAML (see configs/ for examples)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    p.add_argument("--out", help="run directory (default: runs/<name or recipe>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping completed stages")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser(
        "demo",
        help="STaR self-improvement on the built-in arithmetic testbed (CPU, minutes)",
        description="Start from the shipped tiny checkpoint (trained on 1-4 digit sums) and run STaR rounds on "
        "longer sums than it has ever seen; prints a table, writes metrics.jsonl, a PNG plot and an HTML report.",
    )
    p.add_argument("--out", help="run directory (default: runs/demo-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a task's held-out sets; with --verifier, best-of-N curves",
        description="Evaluate a model on a task: accuracy on the held-out sets (pass@k and maj@k with eval.k > 1). "
        "With --verifier, also score N samples per problem with each verifier and plot solve rate against N for "
        "majority vote, best-of-N by every verifier (a PRM by product, min and last step) and weighted votes, "
        "using the unbiased estimators; PRMs also get step-label and first-error accuracy against the checker.",
    )
    p.add_argument("--model", required=True, help="HF hub id, local checkpoint directory, or builtin:<name>")
    p.add_argument("--config", help="config YAML whose task/eval/sampling sections to use (default: arithmetic)")
    p.add_argument("--out", help="output directory (default: runs/eval-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="reuse a finished evaluation in --out")
    p.add_argument(
        "--verifier",
        action="append",
        default=[],
        metavar="KIND:PATH",
        help="a trained verifier to select with; repeatable. KIND is orm (outcome reward model), prm (process "
        "reward model) or implicit (a DPO-trained policy scored by its implicit reward against --reference, "
        "V-STaR's verifier); PATH is its checkpoint, e.g. runs/vstar/round-002/orm",
    )
    p.add_argument(
        "--samples",
        metavar="JSONL",
        help="score these graded samples from a run (e.g. runs/vstar/round-002/test_samples.jsonl) instead of "
        "drawing new ones from --model",
    )
    p.add_argument("--set", help="eval set to draw samples for (default: the task's last one)")
    p.add_argument(
        "--n",
        type=positive_int,
        default=64,
        metavar="N",
        help="samples per problem to draw (curves for N = 1, 2, 4, ... n)",
    )
    p.add_argument("--temperature", type=nonnegative_float, default=1.0, help="temperature of the drawn samples")
    p.add_argument("--reference", help="reference model of implicit verifiers (default: --model)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser(
        "report",
        help="write PNG plots and report.html for a run",
        description="Write plots and an HTML page.",
    )
    p.add_argument("run_dir", help="a run directory holding metrics.jsonl")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser(
        "export",
        help="write a run's records as parquet",
        description="Write every JSONL file of a run (samples, training data, pairs, evaluations, metrics, training "
        "logs) as a parquet file at the same relative path, for datasets.load_dataset('parquet', ...), pandas or "
        "polars.",
    )
    p.add_argument("run_dir", help="a run directory")
    p.add_argument("--to", help="output directory (default: <run_dir>/parquet)")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("recipes", help="list the recipes", description="List the available recipes.")
    p.set_defaults(fn=cmd_recipes)
    return parser


def resume_command(args: argparse.Namespace, out: Path) -> str:
    """The command that resumes this one's run in `out`: its config and overrides (a resumed run must match the
    frozen config), then --resume --out."""
    if args.command == "run":
        words = ["run", args.config, *args.overrides]
    elif args.command == "demo":
        words = ["demo", *args.overrides]
    else:  # eval: every option as given, less --out and --resume (argparse accepts unambiguous prefixes)
        words, skip = [], False
        for w in args.session.argv:
            opt = w.split("=", 1)[0]
            if skip:
                skip = False
            elif len(opt) > 2 and "--out".startswith(opt):
                skip = "=" not in w
            elif not (len(w) > 2 and "--resume".startswith(w) and not "--reference".startswith(w)):
                words.append(w)
    return shlex.join(["selfalign", *words, "--resume", "--out", str(out)])


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _set_handlers(sigint: Any, sigterm: Any) -> Callable[[], None]:
    """Install signal handlers (main thread only: elsewhere Python cannot); returns a function restoring them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.signal(signal.SIGINT, sigint), signal.signal(signal.SIGTERM, sigterm)

    def restore() -> None:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])

    return restore


def _wind_down(session: Session) -> None:
    """After a failure: remove the run if this process created it and no stage completed, so the same command
    can be re-run. Ctrl-C and SIGTERM are ignored from here on (main restores the handlers when it returns), so
    neither cleanup nor the message is cut short by a second one."""
    _set_handlers(signal.SIG_IGN, signal.SIG_IGN)
    if session.run is not None:
        session.run.discard()


def main(argv: list[str] | None = None) -> int:
    from selfalign.errors import SelfAlignError

    _offline_without_hub()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Overrides may come before or after options (`run cfg.yaml --out d a=1` and `run cfg.yaml a=1 --out d`);
    # one without `=` is left to load_config, whose message says what an override looks like.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    session = args.session = Session(argv)
    restore = _set_handlers(signal.default_int_handler, _on_sigterm)
    code, messages = 0, []
    try:
        args.fn(args)
    except SelfAlignError as e:
        _wind_down(session)
        code, messages = 2, [f"selfalign: error: {e}"]
        if session.run is not None and session.run.completed_stages():
            messages.append(
                f"selfalign: the completed stages are kept in {session.run.root}; once fixed, resume with: "
                f"{resume_command(args, session.run.root)}"
            )
    except KeyboardInterrupt as e:
        _wind_down(session)
        code = 143 if isinstance(e, Terminated) else 130
        out = session.out or (Path(args.out) if getattr(args, "out", None) else None)
        if out is not None and args.command in ("run", "demo", "eval"):
            messages = [f"selfalign: interrupted; resume with: {resume_command(args, out)}"]
        else:
            messages = ["selfalign: interrupted"]
    finally:
        if session.run is not None:
            session.run.close()
    # Printed once the exception and its frames are gone: progress bars they held have closed by now.
    if code in (130, 143) and sys.stderr.isatty():
        print(file=sys.stderr)  # off the line a progress bar was drawing
    for m in messages:
        print(m, file=sys.stderr)
    restore()
    return code


if __name__ == "__main__":
    sys.exit(main())
