"""Structure-aware, token-bounded chunking: sections, paragraphs, sentences, words, characters.

A document is cut along the coarsest boundary that keeps every chunk under the
limit: markdown headings first, then blank lines, then sentence ends, then
whitespace, and characters only when a run has no usable break. Token counts
of small pieces are summed as an estimate; every assembled chunk is then
counted for real and repaired if the estimate was short, so the limit is a
guarantee under the given counter, not a hope.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

from .errors import ChunkingError, ConfigError
from .models import Chunk, Document, Segment, embedding_text, make_chunk_id
from .text import sentence_spans
from .tokens import SpanCounts, TokenCounter

__all__ = ["ChunkingConfig", "chunk_document", "fits"]

# A heading or a code fence line; headings inside fences are code, not structure.
_BLOCK_LINE = re.compile(r"^ {0,3}(#{1,6}(?=[ \t]|$)|`{3,}|~{3,})([^\n]*)", re.MULTILINE)
# "## Title ##": the closing run of hashes is decoration.
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
# A blank line (only spaces/tabs) and any whitespace after it ends a paragraph.
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_WORD = re.compile(r"\S+")
# Lone surrogates (possible in a str built from JSON escapes) break tokenizers.
_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_SPACE = re.compile(r"\S")
#: Location keys that may differ inside one chunk: neighbouring rows of a sheet share
#: chunks (a row alone is too small to retrieve well); pages and slides never do.
_SOFT_KEYS = frozenset({"row"})

#: Longest chunk, in characters per token of the limit. Real text runs 3-6
#: characters per token; the cap keeps degenerate input (a megabyte of one
#: letter that WordPiece counts as a single [UNK]) in useful pieces and bounds
#: how much text any single count has to look at.
_MAX_CHARS_PER_TOKEN = 32
_MIN_CHAR_CAP = 256
#: A section up to this many characters per token of budget is first tried whole.
_WHOLE_SECTION_CHARS_PER_TOKEN = 4
#: Chunks planned from estimates and verified in one `count_many` call.
_PLAN_BATCH = 16


@dataclass(frozen=True)
class ChunkingConfig:
    """How big chunks may be.

    Attributes:
        max_tokens: Hard limit for a chunk's `embedding_text` under the counter.
        overlap: Tokens repeated from the end of a chunk at the start of the next
            one in the same section (whole sentences or pieces, so approximate
            from below); must be below `max_tokens // 2`.
        target_tokens: Preferred chunk size (at most `max_tokens`); None means
            `max_tokens`.
    """

    max_tokens: int
    overlap: int = 0
    target_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"chunk max_tokens must be at least 1, got {self.max_tokens}")
        if self.overlap < 0 or (self.overlap > 0 and self.overlap >= self.max_tokens // 2):
            raise ConfigError(
                f"chunk overlap must be between 0 and {max(self.max_tokens // 2 - 1, 0)} "
                f"for max_tokens={self.max_tokens}, got {self.overlap}"
            )
        if self.target_tokens is not None and not 1 <= self.target_tokens <= self.max_tokens:
            raise ConfigError(
                f"chunk target_tokens must be between 1 and max_tokens={self.max_tokens}, "
                f"got {self.target_tokens}"
            )


def fits(text: str, counter: TokenCounter, max_tokens: int) -> bool:
    """Whether `text` counts at most `max_tokens` under `counter`.

    Args:
        text: The exact text that would be sent.
        counter: The counter guarding the model's limit.
        max_tokens: The limit.

    Returns:
        True when the text is within the limit.
    """
    return counter.count(text) <= max_tokens


def chunk_document(
    doc: Document, counter: TokenCounter, config: ChunkingConfig, *, on_progress: Callable[[int], None] | None = None
) -> list[Chunk]:
    """Cut a document into chunks whose `embedding_text` fits `config.max_tokens`.

    Every non-whitespace character of `doc.text` lies in at least one chunk,
    and `doc.text[chunk.start:chunk.end] == chunk.text`.

    Args:
        doc: The document; markdown headings in its text give the structure.
        counter: Token counter of the embedding model.
        config: Limit, preferred size and overlap.
        on_progress: called with the character offset reached after each section (long documents take a while).

    Returns:
        The chunks in document order; empty for a whitespace-only document.

    Raises:
        ChunkingError: The limit cannot hold even one character after the header,
            or the text or title holds an unpaired surrogate.
    """
    text = doc.text
    if _NON_SPACE.search(text) is None:
        return []
    # ASCII text (the common case) holds none, and isascii() reads a flag instead of scanning.
    in_text = not text.isascii() and _SURROGATE.search(text) is not None
    if in_text or _SURROGATE.search(doc.title):
        raise ChunkingError(f"document {doc.id!r}: text or title contains an unpaired surrogate")
    cutter = _Cutter(doc, counter, config)
    spans: list[tuple[int, int, int, _Header]] = []
    cuts = _region_cuts(doc.segments)
    for start, end, headings in _sections(text):
        if _NON_SPACE.search(text, start, end) is None:
            continue
        header = cutter.header(headings)
        # A section that runs over a page or slide boundary is cut there first.
        for a, b in _clip(start, end, cuts):
            if _NON_SPACE.search(text, a, b) is not None:
                spans.extend((s, e, t, header) for s, e, t in cutter.cut_section(a, b, header))
        if on_progress is not None:
            on_progress(end)

    chunks: list[Chunk] = []
    segment_ends = [segment.end for segment in doc.segments]
    # Identical passages (boilerplate) get distinct ids by how many came before.
    occurrences: dict[str, int] = {}
    for ordinal, (start, end, tokens, header) in enumerate(spans):
        piece = text[start:end]
        occurrence = occurrences.get(piece, 0)
        occurrences[piece] = occurrence + 1
        chunks.append(
            Chunk(
                chunk_id=make_chunk_id(doc.id, piece, occurrence),
                doc_id=doc.id,
                ordinal=ordinal,
                text=piece,
                start=start,
                end=end,
                tokens=tokens,
                title=header.title,
                headings=header.headings,
                location=_locate(doc.segments, segment_ends, start, end),
            )
        )
    return chunks


def _hard_key(segment: Segment) -> str:
    return json.dumps({k: v for k, v in segment.location.items() if k not in _SOFT_KEYS}, sort_keys=True)


def _region_cuts(segments: Sequence[Segment]) -> list[int]:
    """Offsets where a new page, slide or sheet begins; text between two places goes with the next."""
    return [
        previous.end
        for previous, segment in zip(segments, segments[1:])
        if _hard_key(previous) != _hard_key(segment)
    ]


def _clip(start: int, end: int, cuts: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) split at the cuts inside it."""
    inside = cuts[bisect_right(cuts, start) : bisect_left(cuts, end)]
    bounds = [start, *inside, end]
    return list(zip(bounds, bounds[1:]))


def _locate(segments: Sequence[Segment], ends: Sequence[int], start: int, end: int) -> dict[str, Any] | None:
    """The location of text[start:end]: its first segment's, with `last_row` when rows run on.

    `ends` holds each segment's end. A chunk that touches no segment (a heading
    between two pages) takes the next one's.
    """
    if not segments:
        return None
    first = bisect_right(ends, start)
    if first == len(segments):
        return dict(segments[-1].location)
    location = dict(segments[first].location)
    last = first
    while last + 1 < len(segments) and segments[last + 1].start < end:
        last += 1
    if last > first and "row" in location:
        final_row = segments[last].location.get("row")
        if final_row is not None and final_row != location["row"]:
            location["last_row"] = final_row
    return location


def _sections(text: str) -> list[tuple[int, int, tuple[str, ...]]]:
    """Split at ATX headings: (start, end, heading path); each heading line opens its section."""
    sections: list[tuple[int, int, tuple[str, ...]]] = []
    path: tuple[str, ...]
    stack: list[tuple[int, str]] = []
    start, path = 0, ()  # text before the first heading has no path
    fence = ""
    for match in _BLOCK_LINE.finditer(text):
        marker, rest = match.group(1), match.group(2)
        if marker[0] in "`~":
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not rest.strip():
                fence = ""
            continue
        if fence:
            continue
        if match.start() > start:
            sections.append((start, match.start(), path))
        level = len(marker)
        title = _CLOSING_HASHES.sub("", rest.strip()).strip()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        start, path = match.start(), tuple(t for _, t in stack if t)
    sections.append((start, len(text), path))
    return sections


def _spans(text: str, start: int, end: int, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-blank pieces of text[start:end] between separator matches, stripped of whitespace."""
    spans = []
    pos = start
    for match in separator.finditer(text, start, end):
        spans.append((pos, match.start()))
        pos = match.end()
    spans.append((pos, end))
    return [s for s in (_strip(text, a, b) for a, b in spans) if s is not None]


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    first = _NON_SPACE.search(text, start, end)
    if first is None:
        return None
    return first.start(), first.start() + len(text[first.start() : end].rstrip())


def _joins_previous(char: str) -> bool:
    """Characters that belong to the one before: combining marks, ZWJ, variation selectors."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me") or char in "\u200d\ufe0e\ufe0f"


class _Unit(NamedTuple):
    """A sentence inside a whole-paragraph piece: where an overlap may begin."""

    start: int
    end: int
    tokens: int


class _Piece(NamedTuple):
    """The smallest span packing moves around: a paragraph, a sentence, or a cut fragment."""

    start: int
    end: int
    #: Estimated tokens of the text alone (the counter's empty-text count removed).
    tokens: int
    #: For a paragraph of several sentences, its sentences (overlap may start at any).
    sentences: tuple[_Unit, ...] = ()
    #: Real count of the piece as a chunk on its own (header included) when known, else 0.
    exact: int = 0


class _Step(NamedTuple):
    """A planned chunk: text[start:pieces[last - 1].end], new text from pieces[needed]."""

    start: int
    needed: int
    last: int
    #: Estimated tokens repeated from the previous chunk (text[start:pieces[needed].start]).
    overlap_tokens: int
    #: Start of the previous chunk in the section; overlap must begin after it.
    previous_start: int


@dataclass(frozen=True)
class _Header:
    title: str
    headings: tuple[str, ...]
    text: str
    #: count(embedding_text(header, "")): what the header costs, fixed tokens included.
    overhead: int


class _Cutter:
    """Cuts one document; holds the counter, the limits and the text."""

    def __init__(self, doc: Document, counter: TokenCounter, config: ChunkingConfig) -> None:
        self.doc = doc
        self.text = doc.text
        self.counter = counter
        self.max = config.max_tokens
        self.target = config.target_tokens or config.max_tokens
        self.overlap = config.overlap
        # Fixed tokens every text costs ([CLS]/[SEP] for WordPiece), so piece
        # counts can be summed without counting them once per piece.
        self.base = counter.count("")
        # A counter whose counts add up over whitespace (WordPiece) lets the chunks
        # of a section be counted from its sentences' counts (see tokens.SpanCounts).
        self._span_counts: Callable[[str, Sequence[tuple[int, int]]], SpanCounts] | None = getattr(
            counter, "span_counts", None
        )
        #: The current section's sentence counts when the counter can add them up.
        self.spans: SpanCounts | None = None
        self.char_cap = max(_MIN_CHAR_CAP, config.max_tokens * _MAX_CHARS_PER_TOKEN)
        self._headers: dict[tuple[str, ...], _Header] = {}

    # -- header --------------------------------------------------------------

    def header(self, headings: tuple[str, ...]) -> _Header:
        """The header for a heading path, shortened so it costs at most max_tokens // 4."""
        cached = self._headers.get(headings)
        if cached is None:
            cached = self._headers[headings] = self._fit_header(self.doc.title, headings)
        return cached

    def _make_header(self, title: str, headings: tuple[str, ...]) -> _Header:
        # Build the string through Chunk.header so it is exactly what the chunk will send.
        probe = Chunk("", "", 0, "", 0, 0, 0, title=title, headings=headings)
        text = probe.header
        overhead = self.counter.count(embedding_text(text, "")) if text else self.base
        return _Header(title, headings, text, overhead)

    def _fit_header(self, title: str, headings: tuple[str, ...]) -> _Header:
        allowed = self.max // 4
        header = self._make_header(title, headings)
        # The header is context, not content: drop the innermost headings first...
        while header.overhead - self.base > allowed and headings:
            headings = headings[:-1]
            header = self._make_header(title, headings)
        if header.overhead - self.base <= allowed:
            return header
        # ...then keep the longest prefix of the title that fits (no need to look
        # further than the characters `allowed` tokens could plausibly hold).
        lo, hi = 0, min(len(title), (allowed + 1) * _MAX_CHARS_PER_TOKEN)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._make_header(title[:mid].rstrip(), ()).overhead - self.base <= allowed:
                lo = mid
            else:
                hi = mid - 1
        header = self._make_header(title[:lo].rstrip(), ())
        # Counts are only roughly monotone: if the found prefix still does not fit, send none.
        return header if header.overhead - self.base <= allowed else self._make_header("", ())

    # -- cutting -------------------------------------------------------------

    def cut_section(self, start: int, end: int, header: _Header) -> list[tuple[int, int, int]]:
        """(start, end, tokens) of the chunks of one section."""
        budget = self.target - header.overhead
        if budget < 1:
            # A small target that the header alone fills: aim for the room left under max.
            budget = max(1, min(self.target, self.max - header.overhead))
        limit = min(self.max, header.overhead + budget)
        start, end = _strip(self.text, start, end) or (start, end)
        self.spans = None
        if end - start <= min(self.char_cap, budget * _WHOLE_SECTION_CHARS_PER_TOKEN):
            # Short enough that it probably fits whole: one count settles it,
            # where the general path counts its sentences and then the chunk.
            tokens = self._count(start, end, header)
            if tokens <= limit:
                return [(start, end, tokens)]
        return self._pack(self._pieces(start, end, header, budget), header, budget)

    def _count_spans(self, spans: Sequence[tuple[int, int]]) -> list[int | None]:
        """Estimated tokens per span; None for spans too long to be one chunk anyway.

        Where the counter offers span counts these are exact, and chunks made of
        whole spans are then counted from them (`self.spans`) instead of again.
        """
        short = [(a, b) for a, b in spans if b - a <= self.char_cap]
        if self._span_counts is not None:
            self.spans = self._span_counts(self.text, short)
            real = self.spans.counts
        else:
            real = self.counter.count_many([self.text[a:b] for a, b in short]) if short else []
        counts = iter(real)
        return [next(counts) - self.base if b - a <= self.char_cap else None for a, b in spans]

    def _pieces(self, start: int, end: int, header: _Header, budget: int) -> list[_Piece]:
        """Paragraphs that fit the budget whole, else their sentences, else fragments.

        Sentences are counted once, in one batch for the section; a paragraph's
        estimate is the sum of its sentences, so it is never counted twice.
        """
        paragraphs = _spans(self.text, start, end, _PARAGRAPH_BREAK)
        groups = [sentence_spans(self.text, a, b, every_line=True) for a, b in paragraphs]
        counts = iter(self._count_spans([span for group in groups for span in group]))
        limit = min(self.max, header.overhead + budget)
        pieces: list[_Piece] = []
        for (a, b), group in zip(paragraphs, groups):
            tokens = [next(counts) for _ in group]
            known = [t for t in tokens if t is not None]
            if len(known) == len(group) and sum(known) <= budget:
                units = tuple(_Unit(s, e, t) for (s, e), t in zip(group, known)) if len(group) > 1 else ()
                pieces.append(_Piece(a, b, sum(known), units))
                continue
            for (s, e), t in zip(group, tokens):
                if t is not None and t <= budget:
                    pieces.append(_Piece(s, e, t))
                else:
                    pieces.extend(self._split_long(s, e, header, limit))
        return pieces

    def _split_long(self, start: int, end: int, header: _Header, limit: int) -> list[_Piece]:
        """Cut a span with no sentence break: at whitespace, else between characters.

        Each piece is the longest prefix found whose embedding text counts at
        most `limit` (falling back to max_tokens), verified with a real count.

        Raises:
            ChunkingError: Not even one character fits under max_tokens.
        """
        text = self.text
        word_ends = [m.end() for m in _WORD.finditer(text, start, end)]
        pieces: list[_Piece] = []
        pos, first_word, hint = start, 0, 0
        while pos < end:
            first_word = bisect_right(word_ends, pos, first_word)
            cap_index = bisect_right(word_ends, pos + self.char_cap, first_word)
            found = self._longest(pos, word_ends[first_word:cap_index], header, limit, hint)
            if found is None:
                # The next word alone is too long: cut inside it by characters.
                word_end = min(word_ends[first_word], pos + self.char_cap)
                found = self._cut_characters(pos, word_end, header, limit, hint)
            cut, tokens = found
            pieces.append(_Piece(pos, cut, tokens - header.overhead, (), tokens))
            hint = cut - pos
            following = _NON_SPACE.search(text, cut, end)
            pos = following.start() if following else end
        return pieces

    def _cut_characters(
        self, pos: int, word_end: int, header: _Header, limit: int, hint: int
    ) -> tuple[int, int]:
        candidates = range(pos + 1, word_end + 1)
        found = self._longest(pos, candidates, header, limit, hint)
        if found is None and limit < self.max:
            found = self._longest(pos, candidates, header, self.max, hint)
        if found is None:
            raise ChunkingError(
                f"document {self.doc.id!r}: max_tokens={self.max} cannot hold one character "
                f"after a header of {header.overhead} tokens ({self.counter.name})"
            )
        cut, tokens = found
        # Cheap courtesy: do not separate a base character from its combining
        # marks, or the halves of an emoji joined by ZWJ, when it still fits.
        text, back = self.text, cut
        while back > pos + 1 and back < len(text) and (_joins_previous(text[back]) or text[back - 1] == "\u200d"):
            back -= 1
        if back != cut and back > pos:
            back_tokens = self._count(pos, back, header)
            if back_tokens <= limit:
                return back, back_tokens
        return cut, tokens

    def _count(self, start: int, end: int, header: _Header) -> int:
        return self._counts([(start, end, header)])[0]

    def _counts(self, spans: Sequence[tuple[int, int, _Header | None]]) -> list[int]:
        """Real counts of text[a:b], or of its embedding text where a header is given.

        Derived from the section's sentence counts where they answer (they are
        exact there), the rest counted in one call.
        """
        counts: list[int | None] = [None] * len(spans)
        if self.spans is not None:
            for i, (start, end, header) in enumerate(spans):
                tokens = self.spans.count(start, end)
                if tokens is not None:
                    # The header's line break separates: its count adds, less [CLS] and [SEP].
                    counts[i] = tokens if header is None else tokens + header.overhead - self.base
        missing = [i for i, tokens in enumerate(counts) if tokens is None]
        if missing:
            texts = [self._text(*spans[i]) for i in missing]
            for i, tokens in zip(missing, self.counter.count_many(texts)):
                counts[i] = tokens
        return counts  # type: ignore[return-value]  # every slot is filled now

    def _text(self, start: int, end: int, header: _Header | None) -> str:
        return self.text[start:end] if header is None else embedding_text(header.text, self.text[start:end])

    def _longest(
        self, pos: int, ends: Sequence[int], header: _Header, limit: int, hint: int
    ) -> tuple[int, int] | None:
        """The largest (roughly) end in `ends` whose text from `pos` fits `limit`, with its count.

        Interpolates on the characters-per-token rate seen so far and falls
        back to bisection when a guess does not halve the bracket, so long
        inputs need a handful of counts, each over at most char_cap characters.
        Only ends that were actually counted are returned.
        """
        if not ends:
            return None
        last = len(ends)
        lo, hi = -1, last  # ends[lo] fits (or none yet); ends[hi] does not (or past the last)
        lo_tokens = 0
        # Close enough to the limit: another count would gain little. Guesses
        # aim inside that window rather than at its edge, so most land in it.
        slack = max(1, limit // 32)
        room = max(1, limit - slack // 2 - header.overhead)
        guess = bisect_right(ends, pos + (hint or room * 4)) - 1
        # Least advance while no upper bound is known; doubling keeps that phase logarithmic.
        step = 1
        bisecting = False
        while hi - lo > 1:
            index = (lo + hi) // 2 if bisecting else min(max(guess, lo + 1), hi - 1)
            width = hi - lo
            tokens = self._count(pos, ends[index], header)
            if tokens <= limit:
                lo, lo_tokens = index, tokens
                if tokens >= limit - slack:
                    break
            else:
                hi = index
            # Interpolate where the limit falls at the rate this count showed.
            rate = (ends[index] - pos) / max(1, tokens - header.overhead)
            guess = bisect_right(ends, pos + rate * room) - 1
            if hi == last:
                guess = max(guess, lo + step)
                step *= 2
            else:
                # Alternate with bisection whenever a guess failed to halve the bracket.
                bisecting = not bisecting and hi - lo > width // 2
        return (ends[lo], lo_tokens) if lo >= 0 else None

    # -- packing -------------------------------------------------------------

    def _pack(self, pieces: list[_Piece], header: _Header, budget: int) -> list[tuple[int, int, int]]:
        """Greedily join pieces up to the budget; verify every chunk with a real count.

        Chunks are planned a batch at a time from estimates and counted in one
        `count_many`; the first one that does not verify is repaired on its own
        and planning resumes after it.
        """
        chunks: list[tuple[int, int, int]] = []
        step = _Step(pieces[0].start, 0, 0, 0, -1)
        while True:
            planned = self._plan(pieces, step, budget)
            for step, tokens in zip(planned, self._verify(planned, pieces, header)):
                if tokens is None:
                    # The estimate was short: fix this chunk alone; plans after it are stale.
                    step, tokens = self._repair(pieces, step, header)
                    chunks.append((step.start, pieces[step.last - 1].end, tokens))
                    break
                chunks.append((step.start, pieces[step.last - 1].end, tokens))
            if step.last >= len(pieces):
                return chunks
            step = self._next_step(pieces, step, budget)

    def _plan(self, pieces: list[_Piece], step: _Step, budget: int) -> list[_Step]:
        """Up to _PLAN_BATCH chunks from `step` on, each filled greedily by estimate."""
        steps: list[_Step] = []
        while len(steps) < _PLAN_BATCH:
            estimate, last = step.overlap_tokens, step.needed
            while last < len(pieces):
                piece = pieces[last]
                too_big = estimate + piece.tokens > budget or piece.end - step.start > self.char_cap
                if last > step.needed and too_big:
                    break
                estimate += piece.tokens
                last += 1
            step = step._replace(last=last)
            steps.append(step)
            if last >= len(pieces):
                break
            step = self._next_step(pieces, step, budget)
        return steps

    def _next_step(self, pieces: list[_Piece], done: _Step, budget: int) -> _Step:
        """The chunk after `done`: its new text starts at pieces[done.last], after any overlap."""
        needed = done.last
        start, tokens = pieces[needed].start, 0
        if self.overlap:
            overlap_start, overlap_tokens = self._overlap_start(pieces, done.start, needed, self.overlap)
            # Overlap is a nicety: never let it push the next new piece out of the chunk.
            if overlap_tokens + pieces[needed].tokens <= budget:
                start, tokens = overlap_start, overlap_tokens
        return _Step(start, needed, needed, tokens, done.start)

    @staticmethod
    def _overlap_start(
        pieces: list[_Piece], previous_start: int, needed: int, allowance: int
    ) -> tuple[int, int]:
        """Earliest sentence/piece start before pieces[needed] whose tail fits `allowance` (estimated)."""
        start, total = pieces[needed].start, 0
        for index in range(needed - 1, -1, -1):
            piece = pieces[index]
            units: Sequence[_Unit | _Piece] = piece.sentences or (piece,)
            for unit in reversed(units):
                # Starting at or before the previous chunk would repeat all of it.
                if unit.start <= previous_start or total + unit.tokens > allowance:
                    return start, total
                start, total = unit.start, total + unit.tokens
        return start, total

    def _verify(self, steps: list[_Step], pieces: list[_Piece], header: _Header) -> list[int | None]:
        """Real count of each planned chunk, or None where it (or its overlap) is over budget."""
        spans: list[tuple[int, int, _Header | None]] = []
        slots: list[tuple[int, int, int] | None] = []
        for step in steps:
            end = pieces[step.last - 1].end
            if end - step.start > self.char_cap:
                slots.append(None)
                continue
            known = self._known(pieces, step)
            chunk_at = -1
            if not known:
                spans.append((step.start, end, header))
                chunk_at = len(spans) - 1
            overlap_at = -1
            if step.start < pieces[step.needed].start:
                spans.append((step.start, pieces[step.needed - 1].end, None))
                overlap_at = len(spans) - 1
            slots.append((known, chunk_at, overlap_at))
        counts = self._counts(spans) if spans else []
        results: list[int | None] = []
        for slot in slots:
            if slot is None:
                results.append(None)
                continue
            known, chunk_at, overlap_at = slot
            tokens = known or counts[chunk_at]
            overlap_fits = overlap_at < 0 or counts[overlap_at] - self.base <= self.overlap
            results.append(tokens if tokens <= self.max and overlap_fits else None)
        return results

    @staticmethod
    def _known(pieces: list[_Piece], step: _Step) -> int:
        """The chunk's count when it is one already-counted piece without overlap, else 0."""
        piece = pieces[step.needed]
        return piece.exact if step.last - step.needed == 1 and step.start == piece.start else 0

    def _repair(self, pieces: list[_Piece], step: _Step, header: _Header) -> tuple[_Step, int]:
        """Make one planned chunk fit: shrink its overlap, drop trailing pieces, or cut finer.

        May replace pieces[step.needed] by smaller pieces (in place).
        """
        start, needed, last = step.start, step.needed, step.last
        first_new = pieces[needed].start
        # The overlap must really fit its own budget: shrink it by what it is over.
        estimate = step.overlap_tokens
        while start < first_new:
            real = self._counts([(start, pieces[needed - 1].end, None)])[0] - self.base
            if real <= self.overlap:
                break
            allowance = min(estimate - 1, estimate - (real - self.overlap))
            start, estimate = (
                self._overlap_start(pieces, step.previous_start, needed, allowance)
                if allowance > 0
                else (first_new, 0)
            )
        while True:
            step = _Step(start, needed, last, estimate, step.previous_start)
            known = self._known(pieces, step)
            if known:
                return step, known
            end = pieces[last - 1].end
            tokens = self._count(start, end, header) if end - start <= self.char_cap else None
            if tokens is not None and tokens <= self.max:
                return step, tokens
            piece = pieces[needed]
            if last - 1 > needed:
                last = self._drop_tail(pieces, start, last, needed, tokens)
            elif start < piece.start:
                start, estimate = piece.start, 0  # give up overlap before cutting new text
            elif piece.sentences:
                # The sum of its sentences underestimated the paragraph: pack its sentences instead.
                pieces[needed : needed + 1] = [_Piece(u.start, u.end, u.tokens) for u in piece.sentences]
                last = needed + len(piece.sentences)
            else:
                pieces[needed : needed + 1] = self._split_long(piece.start, piece.end, header, self.max)
                last = needed + 1

    def _drop_tail(self, pieces: list[_Piece], start: int, last: int, needed: int, tokens: int | None) -> int:
        """New end index after dropping enough trailing pieces to cover the excess."""
        excess = tokens - self.max if tokens is not None else 0
        dropped = 0
        while last - 1 > needed:
            last -= 1
            dropped += pieces[last].tokens
            if dropped >= excess and pieces[last - 1].end - start <= self.char_cap:
                break
        return last
