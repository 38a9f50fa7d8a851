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
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

from indexer.models import ScoredChunk

NO_SOURCES_TEXT = "No indexed passage answers this question."
NO_MATCH_NOTE = "No sentence in the sources matched the question closely; the top source says:"

# Weights of the score's parts; coverage (0..1) is the main term.
BIGRAM_WEIGHT = 0.3
HEADER_WEIGHT = 0.3
#: Words of a question sentence just before a candidate (FAQ style) count almost as its own;
#: the answer's second sentence still gets part of that weight.
LEAD_WEIGHT = 0.8
LEAD_DECAY = 0.6
LEAD_SENTENCES = 2
RANK_BONUS = 0.05
#: Sentences with fewer content words than this (headings, fragments) count less.
MIN_CONTENT_WORDS = 3
SHORT_PENALTY = 0.6
#: A sentence scoring below this fraction of the best one is not worth adding.
RELATIVE_FLOOR = 0.35
#: Two sentences whose word sets overlap this much (Jaccard) say the same thing.
DUPLICATE_JACCARD = 0.8

_WORD = re.compile(r"\w+")
# Candidate sentence ends: terminal punctuation with optional closing quotes or
# brackets, followed by whitespace or the end; CJK full stops; line breaks.
_END = re.compile(r"[.!?\u2026]+[\"'\u2019\u201d)\]]*(?=\s|$)|[\u3002\uff01\uff1f]+|\n")
_WORD_BEFORE = re.compile(r"(\w+(?:\.\w+)*)$")
_LIST_MARKER = re.compile(r"^\(?(?:\d{1,3}|[A-Za-z])[.)]$")
# Lines that stand as blocks of their own: headings, list items, table rows, quotes.
_BLOCK_LINE = re.compile(r"^(?:#{1,6}\s|[-*+>]\s|\d{1,3}[.)]\s|\|)")
_LINE_PREFIX = re.compile(r"^(?:#{1,6}|[-*+>]|\d{1,3}[.)])\s+")
_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "cf", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "fig", "al", "approx", "resp"}
)
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


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Split text into sentences, as (start, end) character offsets into `text`.

    A sentence ends at `.`, `!`, `?` or `…` followed by whitespace (closing quotes
    and brackets stay with it), at a CJK full stop, or at a line break that
    starts or ends a block (a blank line, a heading, a list item, a table row,
    a quote), so headings, list items and table rows are sentences of their
    own. Other line breaks are soft wraps inside a sentence. A period
    after a common abbreviation (`e.g.`, `Dr.`), a single-letter initial or a
    list marker (`1.`) does not end a sentence. Spans carry no surrounding
    whitespace and are never empty; `text[:end]` of any span is a prefix that
    ends on a sentence boundary.

    Args:
        text: any text.

    Returns:
        The spans in order.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _END.finditer(text):
        if match.group() == "\n":
            if not _hard_break(text, match.start()):
                continue
            end = match.start()
        else:
            end = match.end()
            if _keeps_going(text, start, match):
                continue
        _add_span(text, start, end, spans)
        start = match.end()
    _add_span(text, start, len(text), spans)
    return spans


def _hard_break(text: str, newline: int) -> bool:
    """True when the line break at `newline` ends a block, not just a wrapped line."""
    line_start = text.rfind("\n", 0, newline) + 1
    next_end = text.find("\n", newline + 1)
    line = text[line_start:newline].strip()
    following = text[newline + 1 : len(text) if next_end < 0 else next_end].strip()
    if not line or not following:
        return True
    return bool(_BLOCK_LINE.match(line) or _BLOCK_LINE.match(following))


def _keeps_going(text: str, start: int, match: re.Match[str]) -> bool:
    """True when a period is not the end of a sentence (abbreviation, initial, list marker)."""
    if match.group() != ".":
        return False
    end = match.start()
    # Abbreviations, initials and list markers are short: a small window suffices.
    window = text[max(start, end - 12) : end]
    word = _WORD_BEFORE.search(window)
    if word is None:
        return False
    token = word.group(1)
    if token.lower() in _ABBREVIATIONS:
        return True
    if len(token) == 1 and token.isalpha() and token.isupper():
        return True
    return len(token) <= 3 and bool(_LIST_MARKER.match(text[start : match.end()].strip()))


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    lead = len(piece) - len(piece.lstrip())
    spans.append((start + lead, start + lead + len(stripped)))


def extractive_answer(
    question: str,
    sources: Sequence[ScoredChunk],
    *,
    max_sentences: int = 3,
    max_chars: int = 800,
) -> ExtractiveAnswer:
    """Answer with the source sentences that best match the question, each cited `[n]`.

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
    scored = _score(query, candidates)
    if not scored:
        first = candidates[0]
        sentence = _fit(first.text, max_chars - len(NO_MATCH_NOTE) - 8)
        return ExtractiveAnswer(text=f"{NO_MATCH_NOTE} {sentence} [{first.rank + 1}]", cited=[first.rank])

    chosen = _select(scored, max_sentences=max_sentences, max_chars=max_chars)
    # Read in source order: best source first, sentences in their original order.
    chosen.sort(key=lambda pair: (pair[1].rank, pair[1].position))
    text = " ".join(f"{sentence} [{c.rank + 1}]" for sentence, c in chosen)
    cited = list(dict.fromkeys(c.rank for _, c in chosen))
    return ExtractiveAnswer(text=text, cited=cited)


def _terms(text: str) -> list[str]:
    """Lowercased content words, lightly stemmed, in order."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())]


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """Fold plurals so `indexes`/`index` and `policies`/`policy` match; nothing more."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _candidates(sources: Sequence[ScoredChunk]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for rank, scored in enumerate(sources):
        chunk = scored.chunk
        header_terms = frozenset(_terms(chunk.header))
        lead: frozenset[str] = frozenset()
        since_question = LEAD_SENTENCES
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
            out.append(
                _Candidate(rank, position, sentence, words, frozenset(words), header_terms, lead, lead_weight)
            )
            since_question += 1
    return out


def _score(query: list[str], candidates: list[_Candidate]) -> list[tuple[float, _Candidate]]:
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

    scored: list[tuple[float, _Candidate]] = []
    for c in candidates:
        matched = [t for t in unique if t in c.terms]
        led = [t for t in unique if c.lead_weight and t in c.lead_terms and t not in c.terms]
        if not matched and not led:
            continue
        coverage = sum(idf[t] for t in matched) / weight
        header_only = sum(idf[t] for t in unique if t in c.header_terms and t not in c.terms)
        score = coverage + HEADER_WEIGHT * header_only / weight + c.lead_weight * sum(idf[t] for t in led) / weight
        if bigrams and len(matched) > 1:
            found = bigrams.intersection(zip(c.words, c.words[1:]))
            score += BIGRAM_WEIGHT * len(found) / len(bigrams)
        if len(c.terms) < MIN_CONTENT_WORDS:
            score *= SHORT_PENALTY
        score += RANK_BONUS / (c.rank + 1)
        scored.append((score, c))
    return scored


def _select(
    scored: list[tuple[float, _Candidate]], *, max_sentences: int, max_chars: int
) -> list[tuple[str, _Candidate]]:
    """Best sentences first, skipping weak ones, near-duplicates and ones that overflow."""
    ordered = sorted(scored, key=lambda pair: (-pair[0], pair[1].rank, pair[1].position))
    floor = ordered[0][0] * RELATIVE_FLOOR
    chosen: list[tuple[str, _Candidate]] = []
    used = 0
    for score, c in ordered:
        if len(chosen) >= max(1, max_sentences) or score < floor:
            break
        if any(_same(c, other) for _, other in chosen):
            continue
        cost = len(c.text) + len(f" [{c.rank + 1}]") + (1 if chosen else 0)
        if chosen and used + cost > max_chars:
            continue  # a shorter good sentence further down may still fit
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
