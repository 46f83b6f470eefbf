"""Weak-to-strong generalization on three testbeds (configs/weak_to_strong.yaml), one run per seed: test accuracy
of every ground-truth model (weak score and ceiling), of every teacher > student pair trained naively and with the
auxiliary confidence loss, of the bootstrapping chain, and PGR; mean ± sd over seeds, and the median PGR over
pairs (the official notebook's summary, pairs without a gap dropped). Also each pretrained model's saliency: what
the LM itself answers before any fine-tuning (the verdict it writes after a step, the digit it recalls for a
test fact), on the test sets.

    python benchmarks/weak_to_strong_testbed.py --seeds 0 1 2 --out runs/bench-w2s
"""

from __future__ import annotations

import statistics

import torch
from common import markdown_table, run, spread, testbed_parser

from selfalign.evaluation.metrics import performance_gap_recovered
from selfalign.models import load
from selfalign.tasks import weak_to_strong as w2s


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
            t, s = pair.split(">")
            cells = [pair, spread([r["accuracy"][f"ceiling {s}"] - r["accuracy"][f"ceiling {t}"] for r in rows])]
            for loss in losses:
                cells.append(spread([r["weak_to_strong"][loss][pair] for r in rows]))
                pgr = [x for r in rows if (x := r["pgr"][loss][pair]) is not None]
                note = f" (n={len(pgr)})" if len(pgr) < len(rows) else ""  # seeds without a gap are dropped
                cells.append(spread(pgr, "{:.2f}") + note if pgr else "-")
            table.append(cells)
        if first["bootstrap"]:
            gaps = [r["accuracy"][f"ceiling {sizes[-1]}"] - r["accuracy"][f"ceiling {sizes[0]}"] for r in rows]
            cells = [f"{sizes[0]} > {' > '.join(sizes[1:])} (bootstrapped)", spread(gaps)]
            for loss in losses:
                accs = [r["bootstrap"][loss][sizes[-1]] for r in rows]
                pgr = [x for a, r in zip(accs, rows) if (x := chain_pgr(a, r, sizes)) is not None]
                cells += [spread(accs), spread(pgr, "{:.2f}") if pgr else "-"]
            table.append(cells)
        header = [
            "teacher > student",
            "gap (ceiling - weak)",
            *(h for loss in losses for h in (f"accuracy ({loss})", f"PGR ({loss})")),
        ]
        print("\n" + markdown_table(header, table))
        for loss in losses:
            per_run = [[v for v in r["pgr"][loss].values() if v is not None] for r in rows]
            medians = [statistics.median(v) for v in per_run if v]
            print(f"\nmedian PGR over pairs ({loss}): {spread(medians, '{:.2f}')}")

    sizes = runs[0][0]["sizes"]
    measured = [
        {s: saliency(str(args.out / f"w2s-s{seed}" / "round-000" / f"pretrain-{s}")) for s in sizes}
        for seed in args.seeds
    ]
    table = [[task, *(spread([m[s][task] for m in measured]) for s in sizes)] for task in ("arith_check", "facts")]
    print("\nsaliency: the pretrained LM's own test accuracy (arith_check: chance 50%; facts recall: chance 10%)")
    print(markdown_table(["task", *sizes], table))


@torch.no_grad()
def saliency(model_dir: str) -> dict[str, float]:
    """Zero-shot test accuracy of a pretrained LM: arith_check, whether it rates " ok" above " no" after the step
    as it does in the corpus; facts, whether its most likely digit after "word=" is the true one."""
    policy = load("policy", model_dir)
    tok, model = policy.tokenizer, policy.model

    def next_logits(text: str) -> torch.Tensor:
        return model(tok(text, return_tensors="pt")["input_ids"]).logits[0, -1]

    ok, no = tok("o", add_special_tokens=False)["input_ids"][0], tok("n", add_special_tokens=False)["input_ids"][0]
    steps = w2s.splits("arith_check", 1, 1000, 0)[2]
    verdict = sum(
        bool(next_logits(r["completions"][0] + " ")[[ok, no]].argmax() == 0) == bool(r["label"]) for r in steps
    )
    facts = list(w2s.facts().items())[-w2s.TEST_FACTS :]
    digits = tok(list("0123456789"), add_special_tokens=False)["input_ids"]
    recall = sum(int(next_logits(f"{w}=")[[d[0] for d in digits]].argmax()) == int(d) for w, d in facts)
    return {"arith_check": verdict / len(steps), "facts": recall / len(facts)}


def chain_pgr(accuracy: float, row: dict, sizes: list[str]) -> float | None:
    """PGR of the chain's last student against the smallest model's supervision and the largest one's ceiling."""
    weak, ceiling = row["accuracy"][f"ceiling {sizes[0]}"], row["accuracy"][f"ceiling {sizes[-1]}"]
    return performance_gap_recovered(weak, accuracy, ceiling)


if __name__ == "__main__":
    main()
