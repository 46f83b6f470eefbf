"""`selfalign report RUN_DIR`: PNG plots and a self-contained HTML page for a run."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import yaml

from selfalign.errors import InputError
from selfalign.records import atomic_write_text, iter_jsonl
from selfalign.report.plots import plot_accuracy, plot_best_of_n, plot_critics, plot_training, plot_weak_to_strong
from selfalign.report.tables import SCALARS, columns


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _curves(v: object) -> bool:
    """{method: {N: solve rate}}"""
    return isinstance(v, dict) and all(
        isinstance(c, dict) and all(str(n).isdigit() and _number(x) for n, x in c.items()) for c in v.values()
    )


def read_metrics(metrics: Path) -> list[dict]:
    """metrics.jsonl, checked for what the tables and plots read, so a hand-edited or foreign file gets a
    message naming its line instead of a traceback from matplotlib."""
    rows = []
    for lineno, r in iter_jsonl(metrics, required=("round", "accuracy")):
        if isinstance(r["round"], bool) or not isinstance(r["round"], int):
            raise InputError(metrics, f"must be an integer, got {r['round']!r}", line=lineno, field="round")
        if not isinstance(r["accuracy"], dict) or not all(_number(v) for v in r["accuracy"].values()):
            raise InputError(metrics, "must map each eval set to a number", line=lineno, field="accuracy")
        for _, key, _ in SCALARS:
            if r.get(key) is not None and not _number(r[key]):
                raise InputError(metrics, f"must be a number, got {r[key]!r}", line=lineno, field=key)
        if "best_of_n" in r and not _curves(r["best_of_n"]):
            raise InputError(metrics, "must map each method to {N: solve rate}", line=lineno, field="best_of_n")
        aucs = r.get("verifier_auc", {})
        if not isinstance(aucs, dict) or not all(v is None or _number(v) for v in aucs.values()):
            raise InputError(metrics, "must map each verifier to a number", line=lineno, field="verifier_auc")
        rows.append(r)
    if not rows:
        raise InputError(metrics, "no rounds in it yet: the run has not evaluated anything")
    return rows


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise InputError(run_dir, "not a directory" if run_dir.exists() else "no such run directory")
    if not metrics.is_file():
        raise InputError(run_dir, "no metrics.jsonl here; is this a run directory?")
    rows = read_metrics(metrics)
    try:
        return _write(run_dir, rows)
    except OSError as e:
        raise InputError(run_dir, f"cannot write the report: {e.strerror or e}") from None


def training_logs(run_dir: Path) -> dict[str, list[dict]]:
    """Each training stage's per-step log (`round-XXX/<checkpoint>/train_log.jsonl`), in round order."""
    return {
        str(path.parent.relative_to(run_dir)): [e for _, e in iter_jsonl(path, required=("step",))]
        for path in sorted(run_dir.glob("round-*/*/train_log.jsonl"))
    }


def _pgr_table(pgr: dict[str, dict[str, float | None]]) -> str:
    """{loss: {"teacher>student": PGR or None}} as a table, one row per pair."""
    losses = list(pgr)
    head = "<tr><th>teacher &gt; student</th>" + "".join(f"<th>{html.escape(x)}</th>" for x in losses) + "</tr>"
    body = "".join(
        f"<tr><td>{html.escape(pair)}</td>"
        + "".join("<td>{}</td>".format("" if pgr[x].get(pair) is None else f"{pgr[x][pair]:.2f}") for x in losses)
        + "</tr>"
        for pair in pgr[losses[0]]
    )
    return f"<table>{head}{body}</table>"


def _scalar_table(values: dict[str, float | None]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{'' if v is None else f'{100 * v:.1f}%'}</td></tr>"
        for k, v in values.items()
    )
    return f"<table>{body}</table>"


def _nested_table(values: dict[str, dict[str, object]]) -> str:
    """Rows = the outer keys, columns = the scalar inner keys."""
    cols = list(dict.fromkeys(k for v in values.values() for k, x in v.items() if isinstance(x, int | float)))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *cols])
    body = "".join(
        "<tr><td>{}</td>{}</tr>".format(html.escape(name), "".join(f"<td>{_fmt(v.get(c))}</td>" for c in cols))
        for name, v in values.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(x: object) -> str:
    return f"{x:.3f}" if isinstance(x, float) else "" if x is None else html.escape(str(x))


def _write(run_dir: Path, rows: list[dict]) -> Path:
    if all("weak_to_strong" in r for r in rows):
        png = plot_weak_to_strong(rows, run_dir / "weak_to_strong.png", title=f"{run_dir.name}: weak-to-strong")
    else:
        png = plot_accuracy(rows, run_dir / "accuracy.png", title=f"{run_dir.name}: held-out accuracy")
    training = plot_training(training_logs(run_dir), run_dir / "training.png", title=f"{run_dir.name}: training")
    # config and manifest only decorate the page: an unreadable one is left out, not an error
    config = _text(run_dir / "config.yaml")
    try:
        manifest = json.loads(_text(run_dir / "manifest.json") or "{}")
    except ValueError:
        manifest = {}
    stages_done = manifest.get("stages") if isinstance(manifest, dict) else None
    if not isinstance(stages_done, dict):
        stages_done = {}

    headers, cells = columns(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>{}<td>{}</td></tr>".format(
            "".join(f"<td>{html.escape(c)}</td>" for c in row), html.escape(str(r.get("model", "")))
        )
        for row, r in zip(cells, rows)
    )
    stages = "".join(
        "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>".format(
            html.escape(k), v.get("seconds", ""), html.escape(json.dumps(v.get("summary")))
        )
        for k, v in stages_done.items()
        if isinstance(v, dict)
    )
    img = base64.b64encode(png.read_bytes()).decode()
    extra = ""
    if training is not None:
        extra += '<h2>Training, per optimizer step</h2><img src="data:image/png;base64,'
        extra += base64.b64encode(training.read_bytes()).decode() + '" alt="training curves" style="max-width:100%">'

    for r in rows:  # test-time selection curves (verifier recipes)
        if "best_of_n" in r:
            title = f"{run_dir.name}: round {r['round']}, eval set {r.get('selection_set', '')}"
            bon = plot_best_of_n(r["best_of_n"], run_dir / f"best_of_n_round{r['round']}.png", title=title)
            extra += f'<h2>Best-of-N, round {r["round"]}</h2><img src="data:image/png;base64,'
            extra += base64.b64encode(bon.read_bytes()).decode() + '" alt="solve rate against N">'
            aucs = "".join(
                f"<tr><td>{html.escape(name)}</td><td>{'' if v is None else f'{v:.3f}'}</td></tr>"
                for name, v in r.get("verifier_auc", {}).items()
            )
            if aucs:
                head_row = "<tr><th>verifier</th><th>AUC, correct against incorrect samples</th></tr>"
                extra += f"<table>{head_row}{aucs}</table>"

    for r in rows:  # critics: the comprehensiveness-hallucination plane, then the scalar results
        if "fsbs" in r:
            png_c = plot_critics(r, run_dir / "critics.png", title=f"{run_dir.name}: critics")
            extra += '<h2>Critics</h2><img src="data:image/png;base64,'
            extra += base64.b64encode(png_c.read_bytes()).decode() + '" alt="comprehensiveness against hallucination">'
            for part in ("critiqueability", "gdc", "refinement", "assisted", "rm_ranking_accuracy"):
                extra += f"<h3>{part}</h3>{_scalar_table(r.get(part, {}))}"

    for r in rows:  # outcomes by stage: SL-CAI's revisions, self-critique's answers and refinements
        stages = r.get("sl_chain") or {k: v for k, v in r.items() if k == "answers" or k.startswith("refined ")}
        if stages:
            extra += f"<h2>Round {r['round']}: graded responses by stage</h2>{_nested_table(stages)}"

    for r in rows:  # weak-to-strong: PGR per teacher > student pair and loss
        if "pgr" in r:
            title = html.escape(str(r.get("dataset", r["round"])))
            extra += f"<h2>Performance gap recovered, {title}</h2>{_pgr_table(r['pgr'])}"

    try:
        frozen = yaml.safe_load(config) if config else {}
    except yaml.YAMLError:
        frozen = {}
    recipe = frozen.get("recipe", "") if isinstance(frozen, dict) else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>selfalign run {html.escape(run_dir.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
code,pre{{font-size:12px}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>Run <code>{html.escape(run_dir.name)}</code> ({html.escape(str(recipe))})</h1>
<img src="data:image/png;base64,{img}" alt="accuracy per round">
{extra}
<h2>Metrics per round</h2><table><tr>{head}<th>model</th></tr>{body}</table>
<h2>Completed stages</h2><table><tr><th>stage</th><th>seconds</th><th>summary</th></tr>{stages}</table>
<h2>Config</h2><pre>{html.escape(config)}</pre></body></html>"""
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out
