"""The `ifeval` task: verifiable instruction following in the style of IFEval (Zhou et al. 2023).

A prompt is a short writing request with one to three verifiable instructions appended, each rendered by its
constraint (see `selfalign.tasks.constraints`):

    prompt:   Describe a rainy afternoon in a small town. Answer with less than 80 words. In your entire
              response, refrain from the use of any commas.
    meta:     {"constraints": [{"id": "length_constraints:number_words", "kwargs": {"num_words": 80, ...}},
                               {"id": "punctuation:no_comma", "kwargs": {}}]}

There is no reference answer: `check` grades a response by the constraints it meets (strict), so the task is
graded and preference recipes get gold win rates. The held-out prompts (fixed by EVAL_SEED) and the training
prompts (drawn each round) use disjoint base requests. Prompt files replace either set; they hold selfalign's own
lines `{"id", "prompt", "constraints": [{"id", "kwargs"}]}` or IFEval's `{"key", "prompt", "instruction_id_list",
"kwargs"}`, and may name IFBench's instructions too. `task.eval_path: builtin:ifbench` evaluates on IFBench's
prompts (see `selfalign.tasks.ifbench`). No gold pairs: a good and a bad response cannot be written without a model.
"""

from __future__ import annotations

import difflib
import hashlib
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from selfalign.config import IfevalTaskConfig
from selfalign.errors import InputError
from selfalign.records import iter_records
from selfalign.tasks import ifbench
from selfalign.tasks.base import Check, Problem, Task
from selfalign.tasks.constraints import CONSTRAINTS, LAST, REGISTRY, compatible, describe, follows, split_sentences

EVAL_SEED = 9876
N_EVAL = 300  # generated held-out prompts unless task.n_eval says otherwise
HELD_OUT_EVERY = 5  # every fifth base request is held out: train and eval prompts never share a request
# Short writing requests; the constraints are appended to one of them.
BASE_TASKS = tuple(
    """
Write a short note to a neighbour about a lost cat.
Write a thank-you message to a teacher who is retiring.
Describe a rainy afternoon in a small town.
Write a short story about a lighthouse keeper who finds a message in a bottle.
Explain how to make a cup of tea to someone who has never made one.
Write a product description for a reusable water bottle.
Write a poem about the first snow of winter.
Write an email asking your manager for a day off next Friday.
Give advice to a student starting their first year at university.
Describe your ideal weekend.
Write a review of a café that serves excellent pancakes.
Write a short speech to welcome new members to a chess club.
Explain why people enjoy gardening.
Write a letter to your future self ten years from now.
Describe the sounds of a busy market.
Write a short biography of an imaginary inventor.
Write a limerick about a forgetful dog.
Explain how a bicycle works to a child.
Write a complaint to a hotel about a noisy room.
Describe a meal you would cook for a friend.
Write an invitation to a birthday picnic in the park.
Give tips for staying focused while working from home.
Write a diary entry from the point of view of a houseplant.
Describe a walk along a beach at sunset.
Write a short fable about a tortoise and a crow.
Explain the rules of a simple card game you invent.
Write an advertisement for a small bakery.
Write a message cheering up a friend who failed a driving test.
Describe an old library and the people who visit it.
Write a short scene in which two strangers share an umbrella.
Explain how to plant tomatoes in a backyard.
Write a farewell note to a colleague who is moving abroad.
Describe the view from the top of a mountain.
Write a review of a film about space travel.
Give advice on how to prepare for a job interview.
Write a short story about a robot learning to paint.
Write a poem about a city at night.
Explain why sleep matters for health.
Write a postcard from a holiday by the sea.
Describe a festival in a village you imagine.
Write a short guide to caring for a goldfish.
Write a letter to a pen pal describing your hometown.
Explain how to change a flat tyre on a bicycle.
Write a story about a child who can talk to birds.
Write an announcement that the office kitchen will close for cleaning.
Describe a thunderstorm from inside a tent.
Give three reasons to learn a musical instrument.
Write a short toast for a friend's wedding.
Describe the perfect sandwich.
Write a note apologising for missing a meeting.
Explain what a rainbow is to a young child.
Write a short mystery about a missing umbrella.
Write a haiku sequence about spring.
Describe a train journey through the countryside.
Write a welcome message for a new website about hiking.
Give advice on saving money for a holiday.
Write a story about a baker who bakes bread for the moon.
Write a review of a pair of running shoes.
Describe a morning routine that helps you feel calm.
Write a letter to a mayor asking for more bike lanes.
Explain how recycling works in simple terms.
Write a short dialogue between a cat and a dog.
Describe an abandoned amusement park.
Write a motivational message for a football team before a final.
Give tips for taking better photos with a phone.
Write a poem about an old pair of boots.
Write an email inviting neighbours to a street cleanup.
Describe what makes a good friend.
Write a short legend about how the mountains got their snow.
Explain how to brew coffee with a French press.
Write a note to a delivery driver about where to leave a parcel.
Describe a market stall that sells spices.
Write a story about a girl who collects lost buttons.
Give advice to someone learning to cook.
Write a short review of a board game.
Describe a quiet evening at home.
Write a poem about the ocean.
Explain why bees are important for farms.
Write a thank-you note for a birthday present.
Describe the busiest street in a city you imagine.
Write a story about a detective who solves cases with smells.
Give tips for a long car trip with children.
Write a short article about the benefits of walking.
Describe a childhood memory of a summer holiday.
Write an email to a landlord about a broken heater.
Explain how to tie a simple knot.
Write a poem about a lonely scarecrow.
Describe the inside of a spaceship.
Write a short speech for a school graduation.
Give advice on keeping houseplants alive.
Write a story about a lost key that opens a secret door.
Write a review of a museum about trains.
Describe the smell of rain on warm stone.
Write a message to a friend recommending a book.
Explain how a compass helps hikers.
Write a story about a fisherman and a talking fish.
Describe a snowy forest at dawn.
Write an email confirming a dentist appointment.
Give tips for learning a new language.
Write a poem about a kite on a windy day.
Describe a crowded train station.
Write a short tale about a clock that runs backwards.
Explain how to make a paper boat.
Write a note welcoming a new student to class.
Describe a garden in full bloom.
Write a story about two friends building a treehouse.
Give advice on writing a good essay.
Write a review of a new phone app for cooking.
Describe the moment before a concert begins.
Write a letter of recommendation for a hardworking volunteer.
Explain why the moon changes shape.
Write a poem about an autumn leaf.
Describe a lively family dinner.
Write an email asking a shop about a missing order.
Give tips for running your first race.
Write a short story about a dragon who is afraid of heights.
Describe a small island with one shop.
Write a message to a team celebrating a finished project.
Explain how to wash a wool sweater.
Write a poem about a sleeping city bus.
Describe the perfect reading corner.
Write a short story about a girl who finds a map in an attic.
Give advice on moving to a new city.
Write a note reminding roommates to water the plants.
Describe an evening walk through an old town.
Write a review of a concert in a park.
Explain how to set up a tent.
Write a story about a mouse who wants to fly.
Describe a winter morning in a mountain village.
Write an email thanking a customer for their feedback.
Give tips for sleeping well on a plane.
Write a poem about a grandmother's kitchen.
Describe a harbour early in the morning.
Write a short story about a musician who loses her voice.
Explain why people keep diaries.
Write a welcome speech for a science fair.
Describe a playground after the children go home.
Write a message asking a friend to return a borrowed book.
Give advice on starting a vegetable garden on a balcony.
Write a short story about a painter who can only paint the sea.
Describe a hot summer day in a city.
Write a review of a picnic spot by a lake.
Explain how to fold a shirt neatly.
Write a poem about a train that never stops.
Describe a bakery at five in the morning.
Write an email to a club asking how to become a member.
Give tips for keeping a tidy desk.
Write a short story about a boy who befriends a giant.
Describe a river as it flows through a city.
Write a note to a babysitter with instructions for the evening.
Explain how to make a simple salad.
Write a poem about stars over a desert.
Describe the first day at a new job.
Write a short story about a town where it never stops snowing.
Give advice on how to be a good listener.
Write a message congratulating a cousin on a new baby.
Describe a stormy night at sea.
Write a review of a second-hand bookshop.
Explain why exercise improves mood.
Write a story about a wizard who forgets his spells.
Describe a summer fair with rides and games.
""".strip().splitlines()
)
TRAIN_REQUESTS = tuple(t for i, t in enumerate(BASE_TASKS) if i % HELD_OUT_EVERY)
EVAL_REQUESTS = BASE_TASKS[::HELD_OUT_EVERY]
DRAWS = {cid: c.draw for cid, c in CONSTRAINTS.items() if c.draw is not None}
METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


# -- generated prompts ------------------------------------------------------------------------------------


def draw_prompt(request: str, n: int, rng: random.Random) -> tuple[str, list[dict]]:
    """The request with n mutually compatible constraints appended, their arguments drawn from `rng`."""
    ids: list[str] = []
    for cid in rng.sample(list(DRAWS), len(DRAWS)):
        if len(ids) < n and compatible(ids, cid):
            ids.append(cid)
    ids.sort(key=lambda cid: cid == LAST)  # stable: only repeat_prompt moves, to repeat all that precedes it
    prompt, specs = request, []
    for cid in ids:
        spec = {"id": cid, "kwargs": DRAWS[cid](rng, prompt)}
        # a sentence after a multi-line example starts a line of its own, or it would read as part of the example
        prompt += ("\n" if "\n" in prompt else " ") + describe(spec)
        specs.append(spec)
    return prompt, specs


def make_problem(prompt: str, specs: list[dict], pid: str | None = None, request: str | None = None) -> Problem:
    pid = pid or "ifeval-" + hashlib.sha256(prompt.encode()).hexdigest()[:12]  # same prompt, same id in any round
    meta = {"constraints": specs} | ({"request": request} if request is not None else {})
    return Problem(id=pid, prompt=prompt, answer="", difficulty=len(specs), meta=meta)


def hindsight_prompt(problem: Problem, completion: str) -> str:
    """HIR's relabelled instruction: the request with only the constraints the completion follows (strictly), in
    the original order, so that any response is a positive example of some prompt."""
    if "request" not in problem.meta:
        raise ValueError(f"problem {problem.id} has no bare request to relabel (a prompt file's problem?)")
    prompt = problem.meta["request"]
    for spec in problem.meta["constraints"]:
        if follows(spec, completion):
            prompt += ("\n" if "\n" in prompt else " ") + describe(spec)
    return prompt


def draw_problems(
    requests: tuple[str, ...], n: int, max_constraints: int, rng: random.Random, field: str
) -> list[Problem]:
    """n distinct prompts; `field` is the config setting blamed when there are not that many."""
    problems: dict[str, Problem] = {}
    for _ in range(100 * n):
        request = rng.choice(requests)
        prompt, specs = draw_prompt(request, rng.randint(1, max_constraints), rng)
        problems.setdefault(prompt, make_problem(prompt, specs, request=request))
        if len(problems) == n:
            return list(problems.values())
    raise InputError("<config>", f"cannot draw {n} distinct prompts; ask for fewer", field=field)


# -- prompt files ---------------------------------------------------------------------------------------


def load_eval(path: str) -> list[Problem]:
    """The held-out problems of `task.eval_path`: a prompt file, or IFBench's prompts that selfalign can check."""
    if path != ifbench.BUILTIN:
        return load_problems(path)
    problems = load_problems(str(ifbench.data_path()), skip_unsupported=True)
    print(ifbench.coverage())
    return problems


def load_problems(path: str, skip_unsupported: bool = False) -> list[Problem]:
    """A prompt file's problems (selfalign's or IFEval's line format); errors name the file, line and field.
    With `skip_unsupported`, a line naming an unknown instruction id is left out instead (a benchmark's file)."""
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for lineno, rec in iter_records(path, required=("prompt",)):
        if not isinstance(rec["prompt"], str) or not rec["prompt"].strip():
            raise InputError(path, "must be a non-empty string", line=lineno, field="prompt")
        raws = list(_raw_specs(path, lineno, rec))
        if skip_unsupported and not all(isinstance(cid, str) and cid in REGISTRY for _, cid, _, _ in raws):
            continue
        specs = [_spec(path, lineno, *raw) for raw in raws]
        key = "id" if "id" in rec else "key"  # IFEval numbers its prompts with `key`
        pid = rec.get(key, f"{Path(path).stem}-{lineno}")
        if isinstance(pid, bool) or not isinstance(pid, str | int) or not str(pid).strip():
            raise InputError(path, f"must be a non-empty string or an integer, got {pid!r}", line=lineno, field=key)
        if str(pid) in first_line:
            msg = f"duplicate id {str(pid)!r} (first on line {first_line[str(pid)]})"
            raise InputError(path, msg, line=lineno, field=key)
        first_line[str(pid)] = lineno
        problems.append(make_problem(rec["prompt"], specs, str(pid)))
    if not problems:
        raise InputError(path, "file has no records")
    return problems


def _raw_specs(path: str, lineno: int, rec: dict) -> Iterable[tuple[str, object, str, object]]:
    """(id field, id, kwargs field, kwargs) for each constraint of a line, in either format."""
    if "constraints" in rec:
        items = rec["constraints"]
        if not isinstance(items, list) or not items:
            msg = 'must be a non-empty list of {"id": ..., "kwargs": {...}} objects'
            raise InputError(path, msg, line=lineno, field="constraints")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item or set(item) - {"id", "kwargs"}:
                msg = f'must be an object with an "id" and optional "kwargs", got {item!r}'
                raise InputError(path, msg, line=lineno, field=f"constraints[{i}]")
            yield f"constraints[{i}].id", item["id"], f"constraints[{i}].kwargs", item.get("kwargs", {})
    elif "instruction_id_list" in rec:
        ids, kwargs = rec["instruction_id_list"], rec.get("kwargs")
        if not isinstance(ids, list) or not ids:
            raise InputError(path, "must be a non-empty list of ids", line=lineno, field="instruction_id_list")
        if not isinstance(kwargs, list) or len(kwargs) != len(ids):
            msg = f"must be a list of {len(ids)} objects, one per instruction id"
            raise InputError(path, msg, line=lineno, field="kwargs")
        for i, (cid, kw) in enumerate(zip(ids, kwargs)):
            # IFEval's Hugging Face copy gives every instruction every argument, the unused ones null; the
            # official evaluation drops them the same way
            kw = {k: v for k, v in kw.items() if v is not None} if isinstance(kw, dict) else kw
            yield f"instruction_id_list[{i}]", cid, f"kwargs[{i}]", kw
    else:
        msg = "no constraints: give `constraints` (or IFEval's `instruction_id_list` and `kwargs`)"
        raise InputError(path, msg, line=lineno, field="constraints")


def _spec(path: str, lineno: int, id_field: str, cid: object, kwargs_field: str, kwargs: object) -> dict:
    if not isinstance(cid, str) or cid not in REGISTRY:
        close = difflib.get_close_matches(str(cid), REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if isinstance(cid, str) and cid in ifbench.UNSUPPORTED:
            hint = f" (an IFBench id selfalign cannot check offline: it {ifbench.UNSUPPORTED[cid]})"
        raise InputError(path, f"unknown constraint id {cid!r}{hint}", line=lineno, field=id_field)
    if not isinstance(kwargs, dict):
        raise InputError(path, f"must be an object of arguments, got {kwargs!r}", line=lineno, field=kwargs_field)
    try:
        args = REGISTRY[cid].schema.model_validate(kwargs)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join([kwargs_field, *map(str, err["loc"])])
        raise InputError(path, f"{cid}: {err['msg']}", line=lineno, field=field) from None
    return {"id": cid, "kwargs": args.model_dump()}


# -- metrics --------------------------------------------------------------------------------------------


def ifeval_accuracies(rows: Iterable[dict], problems: Iterable[Problem]) -> dict[str, float]:
    """IFEval's four accuracies over sample rows (`problem_id`, `completion`; each row one response): the share
    of responses that follow all their instructions (prompt level) and the share of instructions followed
    (instruction level), each strict and loose. Names as lm-evaluation-harness reports them."""
    specs = {p.id: p.meta["constraints"] for p in problems}
    met = dict.fromkeys(METRICS, 0)
    responses = instructions = 0
    for r in rows:
        for mode in ("strict", "loose"):
            followed = [follows(s, r["completion"], loose=mode == "loose") for s in specs[r["problem_id"]]]
            met[f"prompt_level_{mode}_acc"] += all(followed)
            met[f"inst_level_{mode}_acc"] += sum(followed)
        responses += 1
        instructions += len(followed)
    return {k: v / max(1, instructions if k.startswith("inst") else responses) for k, v in met.items()}


# -- the task -------------------------------------------------------------------------------------------


class IfevalTask(Task):
    name = "ifeval"
    graded = True  # Check.reward is the share of instructions followed: evaluations report it and the win rate

    def __init__(self, cfg: IfevalTaskConfig):
        self.cfg = cfg
        if cfg.eval_path:
            self._eval = load_eval(cfg.eval_path)[: cfg.n_eval]
        else:
            rng = random.Random(EVAL_SEED)
            n = cfg.n_eval or N_EVAL
            self._eval = draw_problems(EVAL_REQUESTS, n, cfg.max_constraints, rng, "task.n_eval")
        self._train = load_problems(cfg.prompts_path) if cfg.prompts_path else None

    def _training(self, draw: str) -> list[Problem]:
        """prompts_path's prompts, or n_train generated ones from the random stream named `draw`."""
        if self._train is not None:
            return self._train
        rng = random.Random(draw)
        return draw_problems(TRAIN_REQUESTS, self.cfg.n_train, self.cfg.max_constraints, rng, "task.n_train")

    def train_problems(self, round: int, seed: int) -> list[Problem]:
        return self._training(f"ifeval-train-{seed}-{round}")

    def unlabelled(self) -> list[Problem]:
        """One fixed pool of training prompts for self-annotating recipes (SPA)."""
        return self._training("ifeval-pool")

    def eval_sets(self) -> dict[str, list[Problem]]:
        """The held-out prompts by their number of instructions."""
        sets: dict[str, list[Problem]] = {}
        for p in sorted(self._eval, key=lambda p: int(p.difficulty)):
            sets.setdefault(str(p.difficulty), []).append(p)
        return sets

    def eval_metrics(self, rows: list[dict]) -> dict[str, Any]:
        return {"ifeval": ifeval_accuracies(rows, self._eval)}

    def check(self, problem: Problem, completion: str) -> Check:
        followed = [follows(s, completion) for s in problem.meta["constraints"]]
        return Check(
            correct=all(followed),
            answer=None,
            reward=sum(followed) / len(followed),
            n_steps=len(self.steps(completion)),
        )

    def hint(self, problem: Problem) -> str:
        return problem.prompt  # no reference answer to give away

    def steps(self, completion: str) -> list[str]:
        return [s for line in completion.splitlines() for s in split_sentences(line)]
