"""PNG plots from a run's metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selfalign.evaluation.metrics import difficulty_order  # noqa: E402
from selfalign.records import atomic_write  # noqa: E402


def _save(fig: plt.Figure, out: Path) -> None:
    """A PNG written atomically (temp file + rename), so a report page never embeds half a plot."""
    try:
        atomic_write(out, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def plot_accuracy(rows: list[dict], out: str | Path, title: str = "held-out accuracy per round") -> Path:
    """One line per difficulty: accuracy against round (round 0 = the starting model)."""
    out = Path(out)
    difficulties = sorted({d for r in rows for d in r["accuracy"]}, key=difficulty_order)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for d in difficulties:
        pts = [(r["round"], r["accuracy"][d]) for r in rows if d in r["accuracy"]]
        ax.plot([x for x, _ in pts], [100 * y for _, y in pts], marker="o", label=f"difficulty {d}")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-3, 103)
    ax.set_xticks(sorted({r["round"] for r in rows}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, out)
    return out


def plot_best_of_n(curves: dict[str, dict], out: str | Path, title: str = "solve rate against N") -> Path:
    """One line per selection method: solve rate against the number of samples N (log2 axis)."""
    out = Path(out)
    fig, ax = plt.subplots(figsize=(7.2, 4.4), dpi=110)
    for name, curve in curves.items():
        ks = sorted(curve, key=int)
        style = {"linestyle": "--", "color": "grey"} if "oracle" in name else {}
        ax.plot([int(k) for k in ks], [100 * curve[k] for k in ks], marker="o", markersize=3, label=name, **style)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel("solve rate (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, out)
    return out


def plot_training(logs: dict[str, list[dict]], out: str | Path, title: str = "training") -> Path | None:
    """One panel per logged quantity (loss, reward, KL, entropy, length, clip fraction...) against the optimizer
    step, training stages placed end to end (a dotted line where one starts); None if nothing was logged."""
    out = Path(out)
    names = list(dict.fromkeys(k for log in logs.values() for e in log for k in e if k not in ("step", "lr")))
    names = [k for k in names if any(isinstance(e.get(k), int | float) for log in logs.values() for e in log)]
    if not names:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), dpi=110, squeeze=False)
    for ax, name in zip(axes.flat, names):
        offset = 0
        for stage, log in logs.items():
            pts = [(offset + e["step"], e[name]) for e in log if isinstance(e.get(name), int | float)]
            ax.plot([x for x, _ in pts], [y for _, y in pts], linewidth=1, label=stage)
            if offset:
                ax.axvline(offset, color="grey", linestyle=":", linewidth=0.8)
            offset += max((e["step"] for e in log), default=0)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].set_xlabel("step", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    return out


def plot_weak_to_strong(rows: list[dict], out: str | Path, title: str = "weak-to-strong") -> Path:
    """One panel per task: test accuracy against student size; the ground-truth ceiling, each teacher's students
    (naive solid, confidence loss dashed), the bootstrapping chain dotted."""
    out = Path(out)
    fig, axes = plt.subplots(1, len(rows), figsize=(4.6 * len(rows), 3.8), dpi=110, squeeze=False)
    styles = {"xent": "-", "logconf": "--"}
    for ax, r in zip(axes.flat, rows):
        sizes = r["sizes"]
        x = {s: i for i, s in enumerate(sizes)}
        ax.plot(range(len(sizes)), [100 * r["accuracy"][f"ceiling {s}"] for s in sizes], "k-o", label="ground truth")
        for ci, t in enumerate(sizes[:-1]):
            for loss, pairs in r["weak_to_strong"].items():
                pts = [(x[s], 100 * a) for pair, a in pairs.items() for tt, s in [pair.split(">")] if tt == t]
                pts = [(x[t], 100 * r["accuracy"][f"ceiling {t}"]), *pts]
                label = f"from {t} ({loss})"
                ax.plot(*zip(*pts), styles.get(loss, "-"), color=f"C{ci}", marker=".", label=label)
        for loss, chain in r.get("bootstrap", {}).items():
            first = f"{sizes[0]}>{sizes[1]}"
            pts = [(1, 100 * r["weak_to_strong"][loss][first]), *((x[s], 100 * a) for s, a in chain.items())]
            ax.plot(*zip(*pts), ":", color="grey", marker="x", label=f"bootstrapped ({loss})")
        ax.set_xticks(range(len(sizes)), sizes, fontsize=7)
        ax.set_xlabel("student size")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(r.get("dataset", f"round {r['round']}"), fontsize=9)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    return out


def plot_critics(row: dict, out: str | Path, title: str = "critics") -> Path:
    """One panel per test set: comprehensiveness against the share of critiques with a hallucinated highlight, for
    each critic's single sample and best-of-N by the critic RM, and FSBS's curve over the length modifiers. A set
    with no flawed solution has no such rates and no panel."""
    out = Path(out)
    sets = sorted({k.rsplit(" ", 1)[1] for k, c in row["fsbs"].items() if "hallucination" in next(iter(c.values()))})
    fig, axes = plt.subplots(1, len(sets), figsize=(4.8 * len(sets), 4), dpi=110, squeeze=False)
    for ax, s in zip(axes.flat, sets):
        for ci, critic in enumerate(sorted({k.split(" ", 1)[0] for k in row["fsbs"]})):
            curve = row["fsbs"][f"{critic} {s}"]
            xs = [100 * m["hallucination"] for m in curve.values()]
            ys = [100 * m["comprehensive"] for m in curve.values()]
            ax.plot(xs, ys, "-o", color=f"C{ci}", label=f"{critic} + FSBS")
            for mod, x, y in zip(curve, xs, ys):
                ax.annotate(mod, (x, y), fontsize=6, textcoords="offset points", xytext=(3, 3))
            best = [k for k in row["critics"] if k.startswith(f"{critic} best-of-") and k.endswith(f" {s}")]
            largest = max(best, key=lambda k: int(k.split("-")[-1].split()[0]), default=None)
            for key, marker in ((f"{critic} {s}", "s"), (largest, "^")):
                if key in row["critics"]:
                    m = row["critics"][key]
                    label = key.removesuffix(f" {s}")
                    ax.plot(100 * m["hallucination"], 100 * m["comprehensive"], marker, color=f"C{ci}", label=label)
        ax.set_xlabel("critiques with a hallucinated highlight (%)")
        ax.set_ylabel("comprehensive (%)")
        ax.set_title(f"{s} bugs", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    return out
