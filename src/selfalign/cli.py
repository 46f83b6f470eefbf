"""The `selfalign` command line."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

OVERRIDES_HELP = "dotted key=value overrides applied on top of the config, e.g. training.lr=3e-4 params.rounds=3"


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _loop(cfg, resume: bool, out: str | Path, recipe=None):
    """Validate the task data, model path and recipe inputs, then create (or reopen) the run directory."""
    from selfalign.models.loading import resolve_model_path
    from selfalign.recipes.loop import Loop
    from selfalign.run import Run
    from selfalign.tasks import make_task

    task = make_task(cfg.task)
    resolve_model_path(cfg.model.path)
    if hasattr(recipe, "validate"):
        recipe.validate(cfg, task)
    return Loop(cfg=cfg, run=Run(out, cfg, resume=resume), task=task)


def _prepare(cfg, resume: bool, out: str | None):
    """Validate everything (recipe, params, task data, model path) before the run dir is created."""
    from selfalign.config import validate_params
    from selfalign.recipes import get_recipe

    recipe = get_recipe(cfg.recipe)
    validate_params(recipe.PARAMS, cfg)
    return recipe, _loop(cfg, resume, out or Path("runs") / (cfg.name or cfg.recipe), recipe)


def cmd_run(args: argparse.Namespace) -> None:
    from selfalign.config import load_config

    cfg = load_config(args.config, args.overrides)
    recipe, loop = _prepare(cfg, args.resume, args.out)
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
    recipe, loop = _prepare(cfg, args.resume, out)
    start = time.time()
    recipe.run(loop)
    _finish(loop)
    print(f"demo finished in {time.time() - start:.0f}s")


def cmd_eval(args: argparse.Namespace) -> None:
    from selfalign.config import load_config
    from selfalign.evaluation.verifiers import parse_verifiers, read_samples, verifier_eval
    from selfalign.models.loading import resolve_model_path

    overrides = [f"model.path={args.model}", *args.overrides]
    cfg = load_config(args.config, overrides, base={"recipe": "eval"} if args.config is None else None)
    verifiers = parse_verifiers(args.verifier)
    reference = resolve_model_path(args.reference or args.model)
    samples = None if args.samples is None else read_samples(args.samples)  # fails before the run dir exists
    loop = _loop(cfg, args.resume, args.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    extra = {}
    if verifiers:
        extra = verifier_eval(loop, verifiers, reference, samples, args.set, args.n, args.temperature)
    loop.evaluate(0, loop.base, **extra)
    _finish(loop)


def cmd_report(args: argparse.Namespace) -> None:
    from selfalign.report.html import write_report

    print(write_report(args.run_dir))


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
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of the drawn samples")
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

    p = sub.add_parser("recipes", help="list the recipes", description="List the available recipes.")
    p.set_defaults(fn=cmd_recipes)
    return parser


def main(argv: list[str] | None = None) -> int:
    from selfalign.errors import SelfAlignError

    parser = build_parser()
    # Overrides may come before or after options (`run cfg.yaml --out d a=1` and `run cfg.yaml a=1 --out d`).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    try:
        args.fn(args)
    except SelfAlignError as e:
        print(f"selfalign: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
