"""`selfalign report RUN_DIR`: PNG plots and a self-contained HTML page for a run."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import yaml

from selfalign.errors import InputError
from selfalign.records import atomic_write_text, read_jsonl
from selfalign.report.plots import plot_accuracy, plot_best_of_n
from selfalign.report.tables import columns


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise InputError(run_dir, "no metrics.jsonl here; is this a run directory?")
    rows = read_jsonl(metrics, required=("round", "accuracy"))
    png = plot_accuracy(rows, run_dir / "accuracy.png", title=f"{run_dir.name}: held-out accuracy")
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").is_file() else {}

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
        for k, v in manifest.get("stages", {}).items()
    )
    img = base64.b64encode(png.read_bytes()).decode()
    extra = ""
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

    recipe = yaml.safe_load(config).get("recipe", "") if config else ""
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
