"""Words of a text: tokenising, stop words and a light stemmer, shared by BM25 and the answer metrics.

    tokenize("The policies were updated in 2024")  ->  ["policy", "updat", "2024"]

One list of stop words and one stemmer serve keyword search (`keyword_index`, `keyword`,
`query_expansion`) and the answer metrics (`answer_metrics`), so "claims" meets "claim" the same
way in both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Common English function words, plus the words questions start with; none of them says what a
# text is about. (bm25s ships a shorter list of 33.)
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom whose why will with would you your yours yourself yourselves s t d ll m re ve also may might
    must shall us per via
    """.split()  # noqa: SIM905 - a word list is easier to read as text
)

_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+", re.UNICODE)


def fold(text: str) -> str:
    """Lower-case `text` and strip accents ("Montréal" -> "montreal")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def light_stem(word: str) -> str:
    """Strip common English endings so that word forms meet ("policies" -> "policy", "expired" and
    "expires" -> "expir").

    A small, predictable stand-in for a real stemmer (Porter/Snowball): plural -s/-es/-ies, then
    -ed/-ing when at least four letters remain, then a final -e. Words shorter than four letters
    and anything with digits stay as they are.
    """
    if len(word) < 4 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    else:
        for suffix in ("ing", "ed"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                word = word[: -len(suffix)]
                if word[-1] == word[-2] and word[-1] not in "lsz":
                    word = word[:-1]  # "planned" -> "plan", "submitting" -> "submit"
                break
    if len(word) >= 4 and word.endswith("e"):
        word = word[:-1]
    return word


def tokenize(text: str, stopwords: Iterable[str] = STOPWORDS, stem: bool = True) -> list[str]:
    """Lower-case words and numbers of `text`, without stop words, stemmed with `light_stem`."""
    stop = stopwords if isinstance(stopwords, (set, frozenset)) else frozenset(stopwords)
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token in stop:
            continue
        tokens.append(light_stem(token) if stem else token)
    return tokens


def title_words(document_id: str) -> str:
    """The words of a document's path ("policies/travel_policy_2024.md" -> "policies travel policy 2024")."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", document_id)
    return re.sub(r"[/_\-.]+", " ", stem).strip()


__all__ = ["STOPWORDS", "fold", "light_stem", "title_words", "tokenize"]
