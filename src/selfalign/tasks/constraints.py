"""Verifiable instructions in the style of IFEval (Zhou et al. 2023): one small pure checker per instruction id,
its argument schema (read off the checker's typed keyword arguments), the instruction sentence it renders (IFEval's
`build_description`) and a seeded draw of its arguments.

Ids, argument names and check semantics follow IFEval's `instructions.py`, except that there is no language
detection (`change_case:english_*` check only the case; `language:response_language` is absent), sentences are
counted with a regex instead of NLTK's punkt, keywords are matched literally (IFEval reads them as regexes),
and letter_frequency counts any one character as asked (IFEval swaps a non-letter such as `#` for a random letter).
Two ids are extensions: `startend:start_checker` and `detectable_format:number_numbered_lists`.

Strict and loose follow IFEval's `evaluation_lib.py`: strict checks the response as it is; loose passes if any of
eight variants passes (the response, without its first line, last line or both, each with and without `*`).

`REGISTRY` adds IFBench's instructions (`selfalign.tasks.ifbench`) to IFEval's: prompt files may name them, but
they are never drawn.
"""

from __future__ import annotations

import inspect
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from selfalign.tasks.ifbench import IFBENCH

Relation = Literal["less than", "at least"]  # IFEval's _COMPARISON_RELATION
Count = Annotated[int, Field(ge=1)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]  # IFEval strips phrases too
Char = Annotated[str, StringConstraints(min_length=1, max_length=1)]  # IFEval's data also counts "#" and "!"
Words = Annotated[list[Text], Field(min_length=1)]

# Word pools of the drawn arguments. The keyword pools avoid the rare letters that letter_frequency may cap, and
# the forbidden pool avoids words of the base tasks, keywords and phrases, so no two drawn constraints contradict.
# fmt: off
KEYWORDS = (
    "river", "window", "garden", "morning", "letter", "silver", "bread", "candle", "music", "island",
    "thunder", "ladder", "pepper", "mirror", "rabbit", "harbor", "autumn", "violet", "button", "signal",
)
# fmt: on
FORBIDDEN = ("very", "really", "actually", "basically", "literally", "amazing", "awesome", "stuff", "nice", "totally")
RARE_LETTERS = "zqxj"
COMMON_LETTERS = "etaoinshrl"
FIRST_WORDS = ("today", "first", "however", "finally", "meanwhile", "then", "overall", "still", "after", "since")
STARTERS = ("I would say", "My answer is", "I believe", "In my opinion", "I think", "From my perspective")
ENDINGS = ("Any other questions?", "Is there anything else I can help with?", "Thank you for reading.", "That is all.")
CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


# -- text measures ------------------------------------------------------------------------------------------


def compare(count: int, relation: Relation, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))  # IFEval: nltk RegexpTokenizer(r"\w+")


def split_sentences(text: str) -> list[str]:
    """Sentences end at . ! or ? (closing quotes or brackets included) before whitespace; a stand-in for punkt.
    List markers are dropped first, so `1. Item` is one sentence, not two."""
    text = re.sub(r"(?m)^\s*(?:\d+[.)]|[*-])\s+", "", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])[\"')\]]*\s+", text.strip()) if s.strip()]


# -- checkers: one per instruction id, `response` first, the instruction's arguments keyword-only -------------


def english_lowercase(response: str) -> bool:
    return response.islower()


def english_capital(response: str) -> bool:
    return response.isupper()


def capital_word_frequency(response: str, *, capital_frequency: Count, capital_relation: Relation) -> bool:
    words = re.findall(r"\w+(?:[-']\w+)*", response)  # a hyphenated word counts once, as in IFEval
    return compare(sum(w.isupper() for w in words), capital_relation, capital_frequency)


def keyword_existence(response: str, *, keywords: Words) -> bool:
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def forbidden_words(response: str, *, forbidden_words: Words) -> bool:
    return not any(re.search(rf"\b{re.escape(w)}\b", response, flags=re.IGNORECASE) for w in forbidden_words)


def keyword_frequency(response: str, *, keyword: Text, frequency: Count, relation: Relation) -> bool:
    return compare(len(re.findall(re.escape(keyword), response, flags=re.IGNORECASE)), relation, frequency)


def letter_frequency(response: str, *, letter: Char, let_frequency: Count, let_relation: Relation) -> bool:
    return compare(Counter(response.lower())[letter.lower()], let_relation, let_frequency)


def start_checker(response: str, *, start_phrase: Text) -> bool:
    # a leading quotation mark is allowed, so the phrase combines with startend:quotation
    return response.strip().lstrip('"').lower().startswith(start_phrase.lower())


def end_checker(response: str, *, end_phrase: Text) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.lower())


def quotation(response: str) -> bool:
    value = response.strip()
    return len(value) > 1 and value[0] == value[-1] == '"'


def number_words(response: str, *, num_words: Count, relation: Relation) -> bool:
    return compare(count_words(response), relation, num_words)


def number_sentences(response: str, *, num_sentences: Count, relation: Relation) -> bool:
    return compare(len(split_sentences(response)), relation, num_sentences)


def number_paragraphs(response: str, *, num_paragraphs: Count) -> bool:
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    # an empty paragraph counts as none at either end, and fails the check in the middle
    if any(not p.strip() for p in paragraphs[1:-1]):
        return False
    return len([p for p in paragraphs if p.strip()]) == num_paragraphs


def nth_paragraph_first_word(response: str, *, num_paragraphs: Count, nth_paragraph: Count, first_word: Text) -> bool:
    paragraphs = response.split("\n\n")
    count = sum(bool(p.strip()) for p in paragraphs)
    if nth_paragraph > count or not paragraphs[nth_paragraph - 1].strip():
        return False  # IFEval indexes the raw split, empty paragraphs included
    word = paragraphs[nth_paragraph - 1].split()[0].lstrip("'\"")
    word = re.split(r"[.,?!'\"]", word)[0].lower()
    return count == num_paragraphs and word == first_word.lower()


def number_placeholders(response: str, *, num_placeholders: Count) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def postscript(response: str, *, postscript_marker: Text) -> bool:
    patterns = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}
    pattern = patterns.get(postscript_marker, r"\s*" + re.escape(postscript_marker.lower()) + r".*$")
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def number_bullet_lists(response: str, *, num_bullets: Count) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def number_numbered_lists(response: str, *, num_items: Count) -> bool:
    return len(re.findall(r"^\s*\d+[.)]\s", response, flags=re.MULTILINE)) == num_items


def constrained_response(response: str) -> bool:
    return any(option in response for option in CONSTRAINED_OPTIONS)


def number_highlighted_sections(response: str, *, num_highlights: Count) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h[2:-2].strip()]
    return len(single) + len(double) >= num_highlights


def multiple_sections(response: str, *, section_spliter: Text, num_sections: Count) -> bool:
    sections = re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", response)
    return len(sections) - 1 >= num_sections


def json_format(response: str) -> bool:
    value = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        value = value.removeprefix(fence)
    try:
        json.loads(value.removesuffix("```").strip())
    except (ValueError, RecursionError):
        return False
    return True


def title(response: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


def two_responses(response: str) -> bool:
    parts = response.split("******")
    if any(not p.strip() for p in parts[1:-1]):
        return False
    answers = [p.strip() for p in parts if p.strip()]
    return len(answers) == 2 and answers[0] != answers[1]


def repeat_prompt(response: str, *, prompt_to_repeat: Text) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.lower())


def no_comma(response: str) -> bool:
    return "," not in response


# -- the registry ---------------------------------------------------------------------------------------------


class Args(BaseModel):
    # strict: a count given as "3" or true is a malformed argument, not a number
    model_config = ConfigDict(extra="forbid", strict=True)


def args_schema(check: Callable[..., bool]) -> type[Args]:
    """A pydantic model of the checker's keyword-only arguments, so the schema cannot drift from the checker."""
    hints = get_type_hints(check, include_extras=True)
    params = inspect.signature(check).parameters.values()
    fields: Any = {p.name: (hints[p.name], ...) for p in params if p.kind is p.KEYWORD_ONLY}
    return create_model(f"{check.__name__}_args", __base__=Args, **fields)


Draw = Callable[[random.Random, str], dict[str, Any]]  # (rng, the request so far) -> arguments


@dataclass(frozen=True)
class Constraint:
    check: Callable[..., bool]
    describe: Callable[..., str]
    draw: Draw | None  # None: read from prompt files only (constrained_response needs a yes/no question)
    tags: frozenset[str] = frozenset()  # two constraints sharing a tag contradict each other: never drawn together
    schema: type[Args] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", args_schema(self.check))


def _relation_draw(rng: random.Random, at_least: tuple[int, int], less_than: tuple[int, int]) -> tuple[str, int]:
    relation = rng.choice(("less than", "at least"))
    return relation, rng.randint(*(less_than if relation == "less than" else at_least))


def _draw_capitals(rng: random.Random, _: str) -> dict:
    relation, n = _relation_draw(rng, (2, 6), (3, 8))
    return {"capital_frequency": n, "capital_relation": relation}


def _draw_keyword(rng: random.Random, _: str) -> dict:
    relation, n = _relation_draw(rng, (1, 3), (2, 4))  # less than 1 would be a forbidden word
    return {"keyword": rng.choice(KEYWORDS), "frequency": n, "relation": relation}


def _draw_letter(rng: random.Random, _: str) -> dict:
    # a cap only on rare letters and a floor only on common ones, so any text of the asked length can comply
    if rng.random() < 0.5:
        return {"letter": rng.choice(RARE_LETTERS), "let_frequency": rng.randint(2, 4), "let_relation": "less than"}
    return {"letter": rng.choice(COMMON_LETTERS), "let_frequency": rng.randint(3, 12), "let_relation": "at least"}


def _draw_words(rng: random.Random, _: str) -> dict:
    relation, n = _relation_draw(rng, (20, 100), (40, 150))
    return {"num_words": n, "relation": relation}


def _draw_sentences(rng: random.Random, _: str) -> dict:
    relation, n = _relation_draw(rng, (2, 6), (3, 10))
    return {"num_sentences": n, "relation": relation}


def _draw_nth_paragraph(rng: random.Random, _: str) -> dict:
    n = rng.randint(2, 4)
    return {"num_paragraphs": n, "nth_paragraph": rng.randint(1, n), "first_word": rng.choice(FIRST_WORDS)}


def _count(name: str, low: int, high: int) -> Draw:
    return lambda rng, _: {name: rng.randint(low, high)}


def _choice(name: str, options: tuple[str, ...]) -> Draw:
    return lambda rng, _: {name: rng.choice(options)}


def _sorted_sample(name: str, pool: tuple[str, ...], k: int) -> Draw:
    return lambda rng, _: {name: sorted(rng.sample(pool, k))}


def _none(rng: random.Random, _: str) -> dict:
    return {}


def _words(words: list[str]) -> str:
    return ", ".join(words)


CONSTRAINTS: dict[str, Constraint] = {
    "change_case:english_lowercase": Constraint(
        english_lowercase,
        lambda: (
            "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed."
        ),
        _none,
        frozenset({"case"}),
    ),
    "change_case:english_capital": Constraint(
        english_capital,
        lambda: "Your entire response should be in English, and in all capital letters.",
        _none,
        frozenset({"case"}),
    ),
    "change_case:capital_word_frequency": Constraint(
        capital_word_frequency,
        lambda capital_frequency, capital_relation: (
            "In your response, words with all capital letters should appear"
            f" {capital_relation} {capital_frequency} times."
        ),
        _draw_capitals,
        frozenset({"case", "echo"}),
    ),
    "keywords:existence": Constraint(
        keyword_existence,
        lambda keywords: f"Include keywords {_words(keywords)} in the response.",
        _sorted_sample("keywords", KEYWORDS, 2),
    ),
    "keywords:forbidden_words": Constraint(
        forbidden_words,
        lambda forbidden_words: f"Do not include keywords {_words(forbidden_words)} in the response.",
        _sorted_sample("forbidden_words", FORBIDDEN, 2),
        frozenset({"echo"}),  # repeating the request would repeat the forbidden words
    ),
    "keywords:frequency": Constraint(
        keyword_frequency,
        lambda keyword, frequency, relation: (
            f"In your response, the word {keyword} should appear {relation} {frequency} times."
        ),
        _draw_keyword,
        frozenset({"echo"}),
    ),
    "keywords:letter_frequency": Constraint(
        letter_frequency,
        lambda letter, let_frequency, let_relation: (
            f"In your response, the letter {letter} should appear {let_relation} {let_frequency} times."
        ),
        _draw_letter,
        frozenset({"echo"}),
    ),
    "startend:start_checker": Constraint(
        start_checker,
        lambda start_phrase: f"Start your response with the exact phrase {start_phrase}.",
        _choice("start_phrase", STARTERS),
        frozenset({"start"}),
    ),
    "startend:end_checker": Constraint(
        end_checker,
        lambda end_phrase: (
            f"Finish your response with this exact phrase {end_phrase}. No other words should follow this phrase."
        ),
        _choice("end_phrase", ENDINGS),
        frozenset({"end"}),
    ),
    "startend:quotation": Constraint(
        quotation,
        lambda: "Wrap your entire response with double quotation marks.",
        _none,
        frozenset({"quote", "json"}),
    ),
    "length_constraints:number_words": Constraint(
        number_words,
        lambda num_words, relation: f"Answer with {relation} {num_words} words.",
        _draw_words,
        frozenset({"echo"}),
    ),
    "length_constraints:number_sentences": Constraint(
        number_sentences,
        lambda num_sentences, relation: f"Your response should contain {relation} {num_sentences} sentences.",
        _draw_sentences,
        frozenset({"echo"}),
    ),
    "length_constraints:number_paragraphs": Constraint(
        number_paragraphs,
        lambda num_paragraphs: (
            f"There should be {num_paragraphs} paragraphs. Paragraphs are separated with the markdown divider: ***"
        ),
        _count("num_paragraphs", 2, 4),
        frozenset({"layout"}),
    ),
    "length_constraints:nth_paragraph_first_word": Constraint(
        nth_paragraph_first_word,
        lambda num_paragraphs, nth_paragraph, first_word: (
            f"There should be {num_paragraphs} paragraphs. Paragraphs"
            " and only paragraphs are separated with each other by two new lines as if it was '\\n\\n' in python."
            f" Paragraph {nth_paragraph} must start with word {first_word}."
        ),
        _draw_nth_paragraph,
        frozenset({"layout", "start"}),
    ),
    "detectable_content:number_placeholders": Constraint(
        number_placeholders,
        lambda num_placeholders: (
            f"The response must contain at least {num_placeholders} placeholders represented"
            " by square brackets, such as [address]."
        ),
        _count("num_placeholders", 1, 3),
    ),
    "detectable_content:postscript": Constraint(
        postscript,
        lambda postscript_marker: (
            f"At the end of your response, please explicitly add a postscript starting with {postscript_marker}"
        ),
        _choice("postscript_marker", ("P.S.", "P.P.S")),
        frozenset({"json"}),
    ),
    "detectable_format:number_bullet_lists": Constraint(
        number_bullet_lists,
        lambda num_bullets: (
            f"Your answer must contain exactly {num_bullets} bullet points. Use the markdown bullet"
            " points such as:\n* This is point 1. \n* This is point 2"
        ),
        _count("num_bullets", 2, 5),
        frozenset({"json"}),
    ),
    "detectable_format:number_numbered_lists": Constraint(
        number_numbered_lists,
        lambda num_items: (
            f"Your answer must contain exactly {num_items} numbered items, such as:\n1. This is item"
            " 1.\n2. This is item 2."
        ),
        _count("num_items", 2, 5),
        frozenset({"json"}),
    ),
    "detectable_format:constrained_response": Constraint(
        constrained_response,
        lambda: f"Answer with one of the following options: {_words(list(CONSTRAINED_OPTIONS))}",
        None,
    ),
    "detectable_format:number_highlighted_sections": Constraint(
        number_highlighted_sections,
        lambda num_highlights: (
            f"Highlight at least {num_highlights} sections in your answer with markdown, i.e. *highlighted section*."
        ),
        _count("num_highlights", 1, 3),
        frozenset({"json"}),
    ),
    "detectable_format:multiple_sections": Constraint(
        multiple_sections,
        lambda section_spliter, num_sections: (
            f"Your response must have {num_sections} sections. Mark the beginning"
            f" of each section with {section_spliter} X, such as:\n{section_spliter} 1\n[content of section 1]\n"
            f"{section_spliter} 2\n[content of section 2]"
        ),
        lambda rng, _: {"section_spliter": rng.choice(("Section", "SECTION")), "num_sections": rng.randint(2, 4)},
        frozenset({"layout", "case"}),  # the splitter is matched case-sensitively
    ),
    "detectable_format:json_format": Constraint(
        json_format,
        lambda: "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",
        _none,
        frozenset({"json", "start", "end", "layout", "comma"}),
    ),
    "detectable_format:title": Constraint(
        title,
        lambda: "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
        _none,
        frozenset({"json"}),
    ),
    "combination:two_responses": Constraint(
        two_responses,
        lambda: (
            "Give two different responses. Responses and only responses should be separated by 6 asterisk"
            " symbols: ******."
        ),
        _none,
        frozenset({"layout", "json"}),
    ),
    "combination:repeat_prompt": Constraint(
        repeat_prompt,
        lambda prompt_to_repeat: (
            "First repeat the request word for word without change, then give your answer (1."
            " do not say any words or characters before repeating the request; 2. the request you need to repeat does"
            " not include this sentence)"
        ),
        lambda rng, request: {"prompt_to_repeat": request},
        frozenset({"start", "quote", "comma", "echo"}),
    ),
    "punctuation:no_comma": Constraint(
        no_comma,
        lambda: "In your entire response, refrain from the use of any commas.",
        _none,
        frozenset({"comma"}),
    ),
}
LAST = "combination:repeat_prompt"  # it repeats the whole request before it, so its sentence comes last
# every id a prompt file may name; IFBench's describe themselves with the official sentence
REGISTRY: dict[str, Constraint] = CONSTRAINTS | {
    cid: Constraint(check, sentence.format, None) for cid, (check, sentence) in IFBENCH.items()
}


# -- strict and loose checking --------------------------------------------------------------------------------


def loose_variants(response: str) -> list[str]:
    """IFEval's loose responses: without the first line, the last line or both (markdown or a chatty preamble),
    each also with every `*` removed (markdown emphasis)."""
    lines = response.split("\n")
    cut = [response] + ["\n".join(ls).strip() for ls in (lines[1:], lines[:-1], lines[1:-1])]
    return cut + [r.replace("*", "") for r in cut]


def follows(spec: dict, response: str, loose: bool = False) -> bool:
    """Whether `response` follows the instruction `spec` ({"id", "kwargs"}, validated); an empty response never does."""
    check = REGISTRY[spec["id"]].check
    variants = loose_variants(response) if loose else [response]
    return any(r.strip() and check(r, **spec["kwargs"]) for r in variants)


def describe(spec: dict) -> str:
    return REGISTRY[spec["id"]].describe(**spec["kwargs"])


def compatible(ids: list[str], new: str) -> bool:
    return new not in ids and all(not CONSTRAINTS[i].tags & CONSTRAINTS[new].tags for i in ids)
