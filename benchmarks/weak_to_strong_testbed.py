"""Weak-to-strong generalization on three testbeds (configs/weak_to_strong.yaml), one run per seed: test accuracy
of every ground-truth model (weak score and ceiling), of every teacher > student pair trained naively and with the
auxiliary confidence loss, of the bootstrapping chain, and PGR; mean ± sd over seeds, and the median PGR over
pairs (the official notebook's summary, pairs without a gap dropped).

    python benchmarks/weak_to_strong_testbed.py --seeds 0 1 2 --out runs/bench-w2s
"""

from __future__ import annotations

import statistics

from common import markdown_table, run, spread, testbed_parser


def main() -> None:
    ap = testbed_parser(__doc__, "runs/bench-w2s")
    ap.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. params.pretrain_steps=3000")
    args = ap.parse_args()
    runs = [run("weak_to_strong.yaml", args.out / f"w2s-s{s}", s, args.overrides) for s in args.seeds]
    for d, first in enumerate(runs[0]):
        rows = [r[d] for r in runs]
        sizes, losses = first["sizes"], list(first["weak_to_strong"])
        print(f"\n### {first['dataset']}\n")
        ceiling = [[spread([r["accuracy"][f"ceiling {s}"] for r in rows]) for s in sizes]]
        print(markdown_table([f"ground truth {s}" for s in sizes], ceiling))
        table = []
        for pair in first["weak_to_strong"][losses[0]]:
            cells = [pair]
            for loss in losses:
                cells.append(spread([r["weak_to_strong"][loss][pair] for r in rows]))
                pgr = [x for r in rows if (x := r["pgr"][loss][pair]) is not None]
                note = f" (n={len(pgr)})" if len(pgr) < len(rows) else ""  # seeds without a gap are dropped
                cells.append(spread(pgr, "{:.2f}") + note if pgr else "-")
            table.append(cells)
        if first["bootstrap"]:
            cells = [f"{sizes[0]} > {' > '.join(sizes[1:])} (bootstrapped)"]
            for loss in losses:
                accs = [r["bootstrap"][loss][sizes[-1]] for r in rows]
                pgr = [x for a, r in zip(accs, rows) if (x := chain_pgr(a, r)) is not None]
                cells += [spread(accs), spread(pgr, "{:.2f}") if pgr else "-"]
            table.append(cells)
        header = ["teacher > student", *(h for loss in losses for h in (f"accuracy ({loss})", f"PGR ({loss})"))]
        print("\n" + markdown_table(header, table))
        for loss in losses:
            per_run = [[v for v in r["pgr"][loss].values() if v is not None] for r in rows]
            medians = [statistics.median(v) for v in per_run if v]
            print(f"\nmedian PGR over pairs ({loss}): {spread(medians, '{:.2f}')}")


def chain_pgr(accuracy: float, row: dict) -> float | None:
    """PGR of the chain's last student against the smallest model's supervision and the largest one's ceiling."""
    weak, ceiling = row["accuracy"][f"ceiling {row['sizes'][0]}"], row["accuracy"][f"ceiling {row['sizes'][-1]}"]
    return (accuracy - weak) / (ceiling - weak) if ceiling > weak else None


if __name__ == "__main__":
    main()
