"""Critics (Saunders et al. 2022, self-critiquing models; McAleese et al. 2024, CriticGPT) on the arithmetic
testbed, where every critique is graded against the ground truth (`tasks.critique`).

    solutions of the training sums: gold; tampered (one subtle bug inserted into gold: a copied digit, a carry or
        a sum, kept as the reference bug); natural (k samples of the generator: its own bugs)
    M_sft = the model fine-tuned on every task at once, as Saunders et al.: answers, critiqueability, reference
            critiques, refinements with and without the critique; or, with mixture `critiques`, a critic trained on
            reference critiques alone, as CriticGPT's                      [sums A: n_train - 2 * rm_sums]
    RM    = a critic reward model on comparisons of M_sft's n critiques per solution ranked by ground truth
            (catches the bug, fewer false highlights): each solution's best against its worst  [sums B: rm_sums]
    M_rs  = M_sft fine-tuned on its RM-best of n critiques (rejection sampling against the RM)   [sums C: rm_sums]
    test, on held-out sums: tampered solutions, natural ones (the generator's samples: its own bugs), and own ones
          (M_sft's answers: self-critique)
        critics M_sft, M_rs: CBI, comprehensiveness, hallucinations, nitpicks, invalid; best-of-N by the RM, and
              how often the RM ranks two critiques of one solution as the ground truth does
        FSBS: force a highlight, sample n, keep the RM's top k, repeat d times; of every candidate take the
              argmax of RM + modifier * highlights, for each length modifier (in sd of the RM's scores; the
              comprehensiveness-hallucination Pareto curve)
        self-critique (mixture `all` only): critiqueability accuracy; wrong answers (natural and own) refined with
              no critique, M_sft's, M_rs's, the reference one; the generator-discriminator-critique (GDC) gap
        assisted evaluation: an evaluator who may check `budget` steps finds the bug unassisted or pointed by a
              critique
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.evaluation.metrics import ranking_accuracy, share
from selfalign.loop import Loop
from selfalign.records import Problem, pair_record
from selfalign.tasks import critique as cq
from selfalign.tasks.arithmetic import TAMPER_KINDS, ArithmeticTask, solution, tamper
from selfalign.tasks.base import Task
from selfalign.verifier_eval import selection_set

SUMMARY = "Critics: tampering, critique SFT, a critic RM, rejection sampling, FSBS, self-critique and refinement."


class CritiqueParams(Strict):
    generator: str | None = Field(None, description="model whose own solutions are the natural bugs (model.path)")
    k: int = Field(2, gt=0, description="natural solutions sampled per training sum")
    tampers: int = Field(3, gt=0, description="tampered copies per training sum of M_sft (kinds in turn)")
    mixture: Literal["all", "critiques"] = Field(
        "all",
        description="M_sft's tasks: `all` (Saunders et al.: answers, critiqueability, critiques, refinements) or "
        "`critiques` (CriticGPT's critic: reference critiques only; no own answers, self-critique or refinement)",
    )
    critique_copies: int = Field(
        1, gt=0, description="copies of each reference critique in M_sft's mixture (weights the critique task)"
    )
    rm_sums: int = Field(100, gt=0, description="sums B whose critiques train the RM, and as many sums C for RS")
    n: int = Field(8, gt=1, description="critiques per solution: RM comparisons, rejection sampling, best-of-N")
    critic_steps: int | None = Field(None, gt=0, description="SFT steps of M_sft (default training.steps)")
    rm_steps: int | None = Field(None, gt=0, description="critic RM steps (default training.steps)")
    rs_steps: int | None = Field(None, gt=0, description="rejection-sampling fine-tune steps (default training.steps)")
    critique_tokens: int = Field(96, gt=0, description="most tokens of a critique")
    fsbs_n: int = Field(4, gt=0, description="FSBS: samples per beam and round")
    fsbs_k: int = Field(2, gt=0, description="FSBS: beams kept per round")
    fsbs_depth: int = Field(3, gt=0, description="FSBS: rounds d, so at most d forced highlights")
    length_modifiers: list[float] = Field(
        [-1.0, 0.0, 0.5, 1.0, 2.0],
        min_length=1,
        description="FSBS: pick argmax RM + modifier * highlights, the modifier in standard deviations of the RM's "
        "scores over all candidates (the paper's RM scale is not public)",
    )
    budget: int = Field(1, gt=0, description="steps the (assisted or unassisted) evaluator checks per solution")
    test: str | None = Field(None, description="eval set of the test sums (default: the last)")


PARAMS = CritiqueParams
HIGHLIGHT_TOKENS = 32  # one highlight: quote, kind, fix


@dataclass(frozen=True)
class Solution:
    id: str
    problem: Problem
    text: str
    origin: str  # gold | tampered | natural (the generator's) | own (M_sft's answers)


def validate(p: CritiqueParams, task: Task, cfg: RunConfig) -> None:
    if not isinstance(task, ArithmeticTask):
        raise InputError("<config>", "the critique recipe needs the arithmetic task", field="task.name")
    if cfg.task.n_train <= 2 * p.rm_sums or len(cfg.task.train_digits) != 1:
        raise InputError(
            "<config>",
            f"task.n_train ({cfg.task.n_train}) must exceed 2 * params.rm_sums ({2 * p.rm_sums}), with one length "
            "in task.train_digits: sums B and C come first, the rest are M_sft's sums A",
            field="task.n_train",
        )
    selection_set(task, p.test)


def run(loop: Loop) -> None:
    p: CritiqueParams = loop.params
    problems = loop.task.train_problems(1, loop.cfg.seed)
    natural = loop.sample(0, "natural", p.generator or loop.base, problems, n=p.k, filter="none (natural bugs)")
    rng = random.Random(loop.run.seed("tamper"))
    m = p.rm_sums
    sums = {"A": problems[2 * m :], "B": problems[:m], "C": problems[m : 2 * m]}
    parts = [training_solutions(sums["A"], natural, rng, p.tampers)]
    parts += [training_solutions(sums[x], natural, rng, 1) for x in "BC"]

    everything = p.mixture == "all"
    answers = [{"prompt": q.prompt, "completion": solution(q)} for q in sums["A"]] if everything else []
    data = answers + sft_records(parts[0], p.critique_copies, everything)
    m_sft = loop.train(1, loop.base, data, steps=p.critic_steps, name="critic-sft")

    graded = critiques(loop, 2, "critiques", m_sft, parts[1], p.n)
    pairs = comparison_pairs(parts[1], graded)
    if not pairs:
        raise InputError(
            loop.run.path("round-002", "critiques.jsonl"),
            f"M_sft's {p.n} critiques of every solution rank equal (all invalid?): no comparisons for the critic RM; "
            "train M_sft longer",
            field="params.critic_steps",
        )
    rm = loop.train(2, m_sft, pairs, trainer="reward", steps=p.rm_steps, name="critic-rm")

    graded = critiques(loop, 3, "rs_critiques", m_sft, parts[2], p.n)
    rewards = loop.rewards(3, "rs_rewards", rm, [g["prompt"] for g in graded], [g["completion"] for g in graded])
    best = [pick(gs, rs, 0.0) for gs, rs in zip(chunks(graded, p.n), chunks(rewards, p.n))]
    rs_data = [{"prompt": g["prompt"], "completion": g["completion"], "source": g["id"]} for g in best]
    m_rs = loop.train(3, m_sft, rs_data, steps=p.rs_steps, name="critic-rs")

    # test, on held-out sums: tampered gold solutions, the generator's answers, M_sft's own answers
    held_out = loop.task.eval_sets()[selection_set(loop.task, p.test)]
    temperature = loop.cfg.sampling.temperature
    natural_test = loop.sample(4, "natural", p.generator or loop.base, held_out, n=1, temperature=temperature)
    by_id = {q.id: q for q in held_out}
    trng = random.Random(loop.run.seed("tamper-test"))
    tests = {
        "tampered": [Solution(f"{q.id}/tampered", q, " ".join(tamper(q, trng)[0]), "tampered") for q in held_out],
        "natural": [Solution(r["id"], by_id[r["problem_id"]], r["completion"], "natural") for r in natural_test],
    }
    if everything:  # a critic that never learned to answer has no answers of its own to critique
        own = loop.sample(4, "answers", m_sft, held_out, n=1, temperature=temperature)
        tests["own"] = [Solution(f"{r['id']}/own", by_id[r["problem_id"]], r["completion"], "own") for r in own]
    test = [s for sols in tests.values() for s in sols]
    sets = set_indices(test)
    row: dict = {"critics": {}, "fsbs": {}, "rm_ranking_accuracy": {}}
    pointers: dict[str, list[dict]] = {}  # each critic's critique per test solution, for the assisted evaluator
    first: dict[str, list[dict]] = {}  # each critic's first sampled critique per test solution
    for name, critic in (("sft", m_sft), ("rs", m_rs)):
        graded = critiques(loop, 4, f"test_critiques-{name}", critic, test, p.n)
        rewards = loop.rewards(
            4, f"test_rewards-{name}", rm, [g["prompt"] for g in graded], [g["completion"] for g in graded]
        )
        first[name] = graded[:: p.n]
        per_solution = list(zip(chunks(graded, p.n), chunks(rewards, p.n)))
        for set_name, idx in sets.items():
            row["critics"][f"{name} {set_name}"] = cq.critique_metrics([first[name][i] for i in idx])
            row["rm_ranking_accuracy"][f"{name} {set_name}"] = ranking_accuracy(
                ([g["quality"] for g in per_solution[i][0]], per_solution[i][1]) for i in idx
            )
            for size in best_of_sizes(p.n):
                chosen = [pick(per_solution[i][0][:size], per_solution[i][1][:size], 0.0) for i in idx]
                row["critics"][f"{name} best-of-{size} {set_name}"] = cq.critique_metrics(chosen)
        pool = fsbs(loop, name, critic, rm, test, per_solution)
        unit = statistics.pstdev([r for _, rs in pool for r in rs]) or 1.0  # modifiers in sd of the RM's scores
        for set_name, idx in sets.items():
            row["fsbs"][f"{name} {set_name}"] = {
                f"{m:g}": cq.critique_metrics([pick(*pool[i], m * unit) for i in idx]) for m in p.length_modifiers
            }
        pointers |= {f"{name} critic": first[name], f"{name} FSBS": [pick(*c, 0.0) for c in pool]}

    row["assisted"] = assisted(test, sets, pointers, p.budget, loop)
    if everything:
        row["refinement"] = {}
        for set_name in ("natural", "own"):
            of_set = {name: [crits[i] for i in sets[set_name]] for name, crits in first.items()}
            row["refinement"] |= refinement(loop, m_sft, set_name, tests[set_name], of_set)
        own_critiques = [first["sft"][i] for i in sets["own"]]
        row["critiqueability"], row["gdc"] = self_critique(loop, m_sft, tests, own_critiques)
    row["accuracy"] = {f"CBI {k}": v["cbi"] for k, v in row["critics"].items() if "best-of" not in k and "cbi" in v}
    loop.record(4, row | {"rm_pairs": len(pairs), "rs_records": len(rs_data)})


def training_solutions(
    problems: list[Problem], natural: list[dict], rng: random.Random, tampers: int
) -> list[Solution]:
    """Per sum: its gold solution, `tampers` tampered copies (the kinds in turn), the generator's natural samples."""
    by_id = {q.id: q for q in problems}
    out = []
    for q in problems:
        out.append(Solution(f"{q.id}/gold", q, solution(q), "gold"))
        for i in range(tampers):
            steps = tamper(q, rng, TAMPER_KINDS[i % len(TAMPER_KINDS)])[0]
            out.append(Solution(f"{q.id}/tampered{i}", q, " ".join(steps), "tampered"))
    out += [
        Solution(r["id"], by_id[r["problem_id"]], r["completion"], "natural")
        for r in natural
        if r["problem_id"] in by_id
    ]
    return out


def sft_records(solutions: list[Solution], critique_copies: int = 1, everything: bool = True) -> list[dict]:
    """Saunders et al.'s behaviour-cloning tasks for each solution, with the ground truth's reference critique
    (`critique_copies` times: a 1M-parameter model learns the critique task poorly from an even mixture); without
    `everything`, the reference critiques alone."""
    out = []
    for s in solutions:
        q, steps = s.problem, s.text.split()
        reference = cq.reference_critique(q, steps)
        fixed = solution(q) if reference != cq.NO_FLAW else s.text
        tasks = [(cq.critique_prompt(q, s.text), reference)] * critique_copies
        if everything:  # in this order, so that the mixture's batches are those measured in BENCHMARKS.md
            label = "no" if reference == cq.NO_FLAW else "yes"
            tasks = [(cq.critiqueability_prompt(q, s.text), label), *tasks]
            tasks += [(cq.refine_prompt(q, s.text, reference), fixed), (cq.refine_prompt(q, s.text, None), fixed)]
        for prompt, completion in tasks:
            out.append({"prompt": prompt, "completion": completion, "source": s.id, "origin": s.origin})
    return out


def critiques(loop: Loop, round: int, name: str, critic: str, solutions: list[Solution], n: int) -> list[dict]:
    """n sampled critiques per solution (ordered by solution), each graded against the ground truth."""
    prompts = [cq.critique_prompt(s.problem, s.text) for s in solutions]
    rows = loop.generate(
        round,
        name,
        critic,
        [s.id for s in solutions],
        prompts,
        n=n,
        temperature=loop.cfg.sampling.temperature,
        max_new_tokens=loop.params.critique_tokens,
    )
    return [r | cq.grade(s.problem, s.text.split(), r["completion"]) for s, r in zip(_repeat(solutions, n), rows)]


def _repeat(xs: list, n: int) -> list:
    return [x for x in xs for _ in range(n)]


def chunks(xs: list, n: int) -> list[list]:
    """xs in consecutive groups of n: the n samples of each prompt, in generation order."""
    return [xs[i : i + n] for i in range(0, len(xs), n)]


def comparison_pairs(solutions: list[Solution], graded: list[dict]) -> list[dict]:
    """Each solution's best critique by ground truth against its worst (CriticGPT ranks critiques by catching the
    bug with fewer false highlights); solutions whose critiques all rank equal give no pair."""
    pairs = []
    for critiques_of_one in chunks(graded, len(graded) // len(solutions)):
        group = sorted(critiques_of_one, key=lambda g: g["quality"])
        worst, best = group[0], group[-1]
        if best["quality"] > worst["quality"]:
            pairs.append(pair_record(best["prompt"], best["completion"], worst["completion"], source=best["source"]))
    return pairs


def set_indices(test: list[Solution]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, s in enumerate(test):
        out.setdefault(s.origin, []).append(i)
    return out


def best_of_sizes(n: int) -> list[int]:
    return [2**i for i in range(n.bit_length()) if 2**i <= n] + ([n] if n & (n - 1) else [])


def pick(graded: list[dict], rewards: list[float], modifier: float) -> dict:
    """argmax of RM + modifier * highlights (FSBS's selection; modifier 0 is best-of-N by the RM)."""
    scores = [r + modifier * g["completion"].count(cq.OPEN) for g, r in zip(graded, rewards)]
    return graded[scores.index(max(scores))]


def fsbs(
    loop: Loop, name: str, critic: str, rm: str, test: list[Solution], unforced: list[tuple[list[dict], list[float]]]
) -> list[tuple[list[dict], list[float]]]:
    """Force Sampling Beam Search (CriticGPT section 2.3): beams start empty; each round prefills a new highlight
    opening on every beam, samples fsbs_n one-highlight continuations, scores them with the RM and keeps the top
    fsbs_k per solution. Returns each solution's candidates (the unforced samples and every forced one) with their
    RM scores."""
    p: CritiqueParams = loop.params
    pool = [(list(gs), list(rs)) for gs, rs in unforced]  # extended in place below
    beams = [[""] for _ in test]
    for d in range(1, p.fsbs_depth + 1):
        owners = [i for i, bs in enumerate(beams) for _ in bs]
        prefills = [f"{b} {cq.OPEN}".lstrip() for bs in beams for b in bs]
        prompts = [cq.critique_prompt(test[i].problem, test[i].text) for i in owners]
        rows = loop.generate(
            4,
            f"fsbs{d}-{name}",
            critic,
            [test[i].id for i in owners],
            prompts,
            n=p.fsbs_n,
            temperature=loop.cfg.sampling.temperature,
            max_new_tokens=HIGHLIGHT_TOKENS,
            prefills=prefills,
        )
        texts = [
            f + r["completion"][len(f) :].split(cq.OPEN)[0].rstrip() for f, r in zip(_repeat(prefills, p.fsbs_n), rows)
        ]
        scores = loop.rewards(4, f"fsbs{d}-{name}-rewards", rm, _repeat(prompts, p.fsbs_n), texts)
        new: list[list[tuple[float, dict]]] = [[] for _ in test]
        for i, r, text, score in zip(_repeat(owners, p.fsbs_n), rows, texts, scores):
            s = test[i]
            g = r | {"completion": text} | cq.grade(s.problem, s.text.split(), text)
            pool[i][0].append(g)
            pool[i][1].append(score)
            new[i].append((score, g))
        beams = [
            list(dict.fromkeys(g["completion"] for _, g in sorted(c, key=lambda x: -x[0])))[: p.fsbs_k] for c in new
        ]
    return pool


def assisted(
    test: list[Solution], sets: dict[str, list[int]], pointers: dict[str, list[dict]], budget: int, loop: Loop
) -> dict[str, float]:
    """Share of flawed test solutions whose bug a budgeted evaluator finds, unassisted (steps at random, averaged
    over 16 draws) and pointed by each critic's critique, per test set."""
    steps = [s.text.split() for s in test]
    bugs = [set(cq.faults(s.problem, st)) for s, st in zip(test, steps)]

    def found(i: int, pointed: list[int], draw: int) -> bool:
        rng = random.Random(f"{loop.run.seed('assisted')}-{test[i].id}-{draw}")
        return cq.evaluator_finds_bug(bugs[i], len(steps[i]), pointed, budget, rng)

    out = {}
    for set_name, idx in sets.items():
        flawed = [i for i in idx if bugs[i]]
        if not flawed:
            continue
        out[f"unassisted {set_name}"] = sum(found(i, [], d) for i in flawed for d in range(16)) / (16 * len(flawed))
        for who, crits in pointers.items():
            pointed = [[h.step for h in cq.parse(crits[i]["completion"], steps[i]) or []] for i in flawed]
            out[f"{who} {set_name}"] = sum(found(i, js, 0) for i, js in zip(flawed, pointed)) / len(flawed)
    return out


def refinement(
    loop: Loop, model: str, set_name: str, sols: list[Solution], first: dict[str, list[dict]]
) -> dict[str, float]:
    """M_sft refines the test set's answers (greedy) given no critique, M_sft's first critique, M_rs's, or the
    reference one: the share of wrong answers made right (`fixed`) and of right ones made wrong (`broken`)."""
    wrong = [not loop.task.check(s.problem, s.text).correct for s in sols]
    critiques_by = {
        "no critique": [None] * len(sols),
        "sft critique": [g["completion"] for g in first["sft"]],
        "rs critique": [g["completion"] for g in first["rs"]],
        "reference critique": [cq.reference_critique(s.problem, s.text.split()) for s in sols],
    }
    out = {}
    for name, crits in critiques_by.items():
        prompts = [cq.refine_prompt(s.problem, s.text, c) for s, c in zip(sols, crits)]
        rows = loop.generate(4, f"refine-{set_name}-{name.split()[0]}", model, [s.id for s in sols], prompts)
        right = [loop.task.check(s.problem, r["completion"]).correct for s, r in zip(sols, rows)]
        out[f"{set_name} fixed, {name}"] = share([r for r, w in zip(right, wrong) if w])
        out[f"{set_name} broken, {name}"] = share([not r for r, w in zip(right, wrong) if not w])
    return out


def self_critique(
    loop: Loop, model: str, tests: dict[str, list[Solution]], own_critiques: list[dict]
) -> tuple[dict[str, float], dict[str, float]]:
    """Critiqueability accuracy per test set, and Saunders et al.'s GDC gap on M_sft's own answers: G = its
    answers' accuracy, D = its critiqueability accuracy (is there a flaw?), C = its critiques' accuracy (`ok` on a
    flawless answer, the critical bug caught on a flawed one)."""
    accuracy, said = {}, {}
    for set_name, sols in tests.items():
        prompts = [cq.critiqueability_prompt(s.problem, s.text) for s in sols]
        rows = loop.generate(4, f"critiqueability-{set_name}", model, [s.id for s in sols], prompts, max_new_tokens=4)
        said[set_name] = [r["completion"].strip() == "yes" for r in rows]
        flawed = [bool(cq.faults(s.problem, s.text.split())) for s in sols]
        accuracy[set_name] = share([a == f for a, f in zip(said[set_name], flawed)])
    own = tests["own"]
    critique_right = [g["cbi"] if g["flawed"] else g["completion"].strip() == cq.NO_FLAW for g in own_critiques]
    gdc = {
        "G answers correct": share([loop.task.check(s.problem, s.text).correct for s in own]),
        "D critiqueability accuracy": accuracy["own"],
        "C critique accuracy": share(critique_right),
    }
    return accuracy, gdc
