"""Offline answers: the source sentences that best match the question, each cited.

Used when no chat model is configured (or reachable). Nothing is generated:
every sentence of the answer is copied from a source and followed by that
source's number, so the citations are true by construction.

Scoring is lexical and deterministic. A sentence scores by how much of the
question's weight it covers, where each question term weighs its IDF over the
candidate sentences (rare words decide, common ones barely count), plus a
bonus for question bigrams it contains, plus a little for words that only the
chunk's title/headings share with the question, plus a small bonus for the
source's rank.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import Stemmer

from indexer.models import ScoredChunk
from indexer.text import sentence_spans

NO_SOURCES_TEXT = "No indexed passage answers this question."
NO_MATCH_NOTE = "No sentence in the sources matched the question closely; the top source says:"

# Weights of the score's parts; coverage (0..1) is the main term.
BIGRAM_WEIGHT = 0.15
HEADER_WEIGHT = 1.0
#: Words of a question sentence just before a candidate (FAQ style) count almost as its own;
#: the answer's second sentence still gets part of that weight.
LEAD_WEIGHT = 0.8
LEAD_DECAY = 0.6
LEAD_SENTENCES = 2
#: A sentence that opens with a pronoun ("It ranges from ...") is about what the
#: sentence before it named: that sentence's words count this much.
PRONOUN_WEIGHT = 0.5
#: A sentence holding the kind of thing the question asks for (a number for "how
#: many", a year for "when", a name for "who") that the question itself lacks.
ANSWER_TYPE_WEIGHT = 0.15
#: A sentence holding every number or code of the question (an error code, a year, a model name).
CODE_WEIGHT = 0.15
#: Lower-ranked sources count less: a sentence from source n scores / (1 + RANK_DECAY * (n - 1)).
RANK_DECAY = 0.2
#: Sentences with fewer content words than this (headings, fragments) count less.
MIN_CONTENT_WORDS = 3
SHORT_PENALTY = 0.6
#: A further sentence joins the answer only if it scores this close to the best one.
RELATIVE_FLOOR = 0.7
#: While the answer stays this short, a runner-up scoring above SHORT_FLOOR of the best may join too.
SHORT_ANSWER_CHARS = 250
SHORT_FLOOR = 0.5
#: Two sentences whose word sets overlap this much (Jaccard) say the same thing.
DUPLICATE_JACCARD = 0.8

_WORD = re.compile(r"\w+")
_LINE_PREFIX = re.compile(r"^(?:#{1,6}|[-*+>]|\d{1,3}[.)])\s+")
_STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing done down during each either
    else ever few for from further get gets got had has have having he her here hers him his how
    however i if in into is it its itself just me might more most must my no nor not now of off
    on once only or other our ours out over own per please same shall she should so some such
    than that the their theirs them then there these they this those through to too under until
    up upon us very was we were what whatever when where whether which while who whom whose why
    will with within without would yes yet you your yours tell explain describe give show
    """.split()
)


@dataclass(frozen=True)
class ExtractiveAnswer:
    """An answer made of source sentences."""

    text: str
    #: Indices into the given sources (0-based), in the order they are cited.
    cited: list[int]


class _Candidate(NamedTuple):
    rank: int
    position: int
    text: str
    #: Content words in order, and as a set.
    words: list[str]
    terms: frozenset[str]
    header_terms: frozenset[str]
    #: Words of a question sentence shortly before this one in its chunk, if any, and their weight.
    lead_terms: frozenset[str]
    lead_weight: float
    #: Words of the sentence before, when this one opens with a pronoun that points back to it.
    prior_terms: frozenset[str]


def extractive_answer(
    question: str,
    sources: Sequence[ScoredChunk],
    *,
    max_sentences: int = 3,
    max_chars: int = 600,
) -> ExtractiveAnswer:
    """Answer with the source sentences that best answer the question, each cited `[n]`.

    The best sentence comes first; another joins only when it scores nearly as
    well (`RELATIVE_FLOOR`) and says something else, so most answers are one or
    two sentences.

    Args:
        question: the user's question.
        sources: ranked chunks, best first; `[n]` cites `sources[n - 1]`.
        max_sentences: most sentences in the answer.
        max_chars: soft cap on the answer's length; the first sentence is cut
            at a word boundary if it alone is longer.

    Returns:
        The answer text and the cited source indices. With no sources, a fixed
        "no passage" text and no citations; when no sentence shares a word with
        the question, the top source's first sentence behind a short note.
    """
    candidates = _candidates(sources)
    if not candidates:
        return ExtractiveAnswer(text=NO_SOURCES_TEXT, cited=[])

    query = _terms(question)
    scored = _score(query, candidates, _answer_kind(question), _words_of(question))
    if not scored:
        first = candidates[0]
        sentence = _fit(first.text, max_chars - len(NO_MATCH_NOTE) - 8)
        return ExtractiveAnswer(text=f"{NO_MATCH_NOTE} {sentence} [{first.rank + 1}]", cited=[first.rank])

    chosen = _select(scored, max_sentences=max_sentences, max_chars=max_chars)
    text = " ".join(f"{sentence} [{c.rank + 1}]" for sentence, c in chosen)
    cited = list(dict.fromkeys(c.rank for _, c in chosen))
    return ExtractiveAnswer(text=text, cited=cited)


def _terms(text: str) -> list[str]:
    """Lowercased content words, stemmed, in order."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]


def _words_of(text: str) -> frozenset[str]:
    return frozenset(w.casefold() for w in _WORD.findall(text))


_STEMMER = Stemmer.Stemmer("english")
# PyStemmer keeps state between calls: one caller at a time.
_STEM_LOCK = threading.Lock()


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """Snowball (Porter 2) stem, so `refreshed`/`refreshes` and `policies`/`policy` match."""
    with _STEM_LOCK:
        return str(_STEMMER.stemWord(word))


# -- what kind of answer the question wants ------------------------------------------------

_NUMBER_QUESTION = re.compile(
    r"\b(how (many|much|long|old|far|large|big|tall|high|often|fast)|what (percentage|percent|number|amount|size))\b"
)
_DATE_QUESTION = re.compile(r"\b(when|(what|which) (year|years|century|decade|date|month|day|time|period|era))\b")
_NAME_QUESTION = re.compile(r"\b(who|whom|whose|where|which)\b")
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred "
    "thousand million billion trillion dozen half quarter".split()
)
_MONTHS = frozenset(
    "january february march april may june july august september october november december "
    "century centuries decade".split()
)
_YEAR = re.compile(r"^(1\d{3}|20\d{2})s?$")


def _answer_kind(question: str) -> str | None:
    """`number`, `date` or `name` when the question's wording asks for one, else None."""
    lowered = question.lower()
    for kind, pattern in (("number", _NUMBER_QUESTION), ("date", _DATE_QUESTION), ("name", _NAME_QUESTION)):
        if pattern.search(lowered):
            return kind
    return None


def _has_kind(sentence: str, kind: str, question_words: frozenset[str]) -> bool:
    """True when the sentence holds a word of `kind` that the question does not already say."""
    words = _WORD.findall(sentence)
    fresh = [w for w in words if w.casefold() not in question_words]
    if kind == "number":
        return any(any(ch.isdigit() for ch in w) or w.lower() in _NUMBER_WORDS for w in fresh)
    if kind == "date":
        return any(_YEAR.match(w) or w.lower() in _MONTHS for w in fresh)
    # Names, places, products: a capitalised word past the first, or an identifier with digits.
    return any((w[0].isupper() and i > 0) or (any(ch.isdigit() for ch in w) and any(ch.isalpha() for ch in w))
               for i, w in enumerate(words) if w.casefold() not in question_words)


def _candidates(sources: Sequence[ScoredChunk]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for rank, scored in enumerate(sources):
        chunk = scored.chunk
        header_terms = frozenset(_terms(chunk.header))
        lead: frozenset[str] = frozenset()
        since_question = LEAD_SENTENCES
        previous: frozenset[str] = frozenset()
        for position, (start, end) in enumerate(sentence_spans(chunk.text)):
            raw = chunk.text[start:end]
            if raw.rstrip().endswith(("?", "\uff1f")):
                # A question restates a topic, it does not answer it; the sentences after it do.
                lead, since_question = frozenset(_terms(raw)), 0
                continue
            if raw.startswith("#"):
                continue  # headings name a topic too
            sentence = " ".join(_LINE_PREFIX.sub("", raw).split())
            if not _WORD.search(sentence):
                continue  # rules such as `---` or `|---|---|`
            words = _terms(sentence)
            lead_weight = LEAD_WEIGHT * LEAD_DECAY**since_question if since_question < LEAD_SENTENCES else 0.0
            opener = sentence.split(maxsplit=1)[0].lower().strip(",")
            prior = previous if opener in _POINTERS else frozenset()
            out.append(
                _Candidate(rank, position, sentence, words, frozenset(words), header_terms, lead, lead_weight, prior)
            )
            previous = frozenset(words)
            since_question += 1
    return out


#: Sentence openers that point back to the sentence before.
_POINTERS = frozenset("it its this these they their those that such he she his her".split())


def _score(
    query: list[str], candidates: list[_Candidate], kind: str | None, question_words: frozenset[str]
) -> list[tuple[float, _Candidate]]:
    """Candidates that share at least one word with the question, with their scores."""
    unique = list(dict.fromkeys(query))
    if not unique:
        return []
    total = len(candidates)
    idf: dict[str, float] = {}
    for term in unique:
        df = sum(1 for c in candidates if term in c.terms)
        idf[term] = math.log(1.0 + (total - df + 0.5) / (df + 0.5))
    weight = sum(idf.values())
    bigrams = set(zip(query, query[1:]))
    # Numbers and codes the question names (402, gemma2, 1901): a sentence naming them all is about them.
    codes = {t for t in unique if any(ch.isdigit() for ch in t)}

    scored: list[tuple[float, _Candidate]] = []
    for c in candidates:
        # Each question word counts once, by the best place it is found: the sentence itself,
        # its headings, a question just before it (FAQ) or, for "It ...", the sentence before.
        found = {t: 1.0 for t in unique if t in c.terms}
        for terms, share in ((c.header_terms, HEADER_WEIGHT), (c.lead_terms, c.lead_weight), (c.prior_terms, PRONOUN_WEIGHT)):
            for t in unique:
                if share and t in terms and found.get(t, 0.0) < share:
                    found[t] = share
        if not any(t in c.terms or t in c.lead_terms or t in c.prior_terms for t in found):
            continue  # a heading's words alone do not make a sentence an answer
        score = sum(idf[t] * share for t, share in found.items()) / weight
        matched = [t for t in unique if t in c.terms]
        if bigrams and len(matched) > 1:
            pairs = bigrams.intersection(zip(c.words, c.words[1:]))
            score += BIGRAM_WEIGHT * len(pairs) / len(bigrams)
        if codes and codes <= c.terms:
            score += CODE_WEIGHT
        if kind and _has_kind(c.text, kind, question_words):
            score += ANSWER_TYPE_WEIGHT
        if len(c.terms) < MIN_CONTENT_WORDS:
            score *= SHORT_PENALTY
        scored.append((score / (1 + RANK_DECAY * c.rank), c))
    return scored


def _select(
    scored: list[tuple[float, _Candidate]], *, max_sentences: int, max_chars: int
) -> list[tuple[str, _Candidate]]:
    """Best sentence first, then close runners-up, skipping near-duplicates and ones that overflow."""
    ordered = sorted(scored, key=lambda pair: (-pair[0], pair[1].rank, pair[1].position))
    best = ordered[0][0]
    chosen: list[tuple[str, _Candidate]] = []
    used = 0
    for score, c in ordered:
        if len(chosen) >= max(1, max_sentences) or score < best * SHORT_FLOOR:
            break
        if any(_same(c, other) for _, other in chosen):
            continue
        cost = len(c.text) + len(f" [{c.rank + 1}]") + (1 if chosen else 0)
        if chosen and used + cost > max_chars:
            continue  # a shorter good sentence further down may still fit
        if chosen and score < best * RELATIVE_FLOOR and used + cost > SHORT_ANSWER_CHARS:
            continue  # a weaker runner-up is worth adding only while the answer stays short
        text = c.text if chosen else _fit(c.text, max_chars - len(f" [{c.rank + 1}]"))
        chosen.append((text, c))
        used += cost
    return chosen


def _same(a: _Candidate, b: _Candidate) -> bool:
    if a.text.casefold() == b.text.casefold():
        return True
    if not a.terms or not b.terms:
        return False
    return len(a.terms & b.terms) / len(a.terms | b.terms) >= DUPLICATE_JACCARD


def _fit(sentence: str, limit: int) -> str:
    """The sentence, or its start cut at a word boundary with an ellipsis."""
    limit = max(limit, 20)
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "\u2026"
