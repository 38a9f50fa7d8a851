"""Conversations: earlier turns, and turning a follow-up into a question that stands alone.

Retrieval sees one string, so "And how long until it refreshes?" has to carry
what "it" is before it is searched for. With a chat model the model rewrites
the follow-up (a short prompt within the model's budget); offline, or when that
call fails, the follow-up gets the salient words of the earlier questions,
most recent first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from indexer import TokenCounter

from .errors import QueryError
from .prompting import MESSAGE_OVERHEAD, Budget, count_messages

Role = Literal["user", "assistant"]

#: Most earlier turns accepted with one question.
MAX_TURNS = 200
#: Longest single turn accepted, in characters.
MAX_TURN_CHARS = 100_000
#: Most words the offline method adds to a follow-up.
MAX_ADDED_TERMS = 8
#: Words added to a follow-up that names its own topic (no reference to resolve).
MAX_ADDED_TERMS_SELF_CONTAINED = 3
#: Completion budget of the rewrite call: one short question.
REWRITE_MAX_TOKENS = 160
#: An assistant turn is cut to this many characters in the rewrite prompt: it is there
#: to resolve references, not to be answered again.
REWRITE_ASSISTANT_CHARS = 800

REWRITE_SYSTEM = (
    "You rewrite the last question of a conversation so that it can be understood on its own, "
    "for a search engine. Replace pronouns and references with what they refer to in the earlier "
    "turns, keep the question's language and meaning, and add nothing else. "
    "Reply with the rewritten question only."
)
REWRITE_QUESTION_PREFIX = "Last question: "
REWRITE_SUFFIX = "\n\nThe last question, rewritten to stand alone:"

_WORD = re.compile(r"[^\W_](?:[\w.\-/]*[^\W_])?")

# Function words and question words: they say nothing about the topic.
_STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each else even ever every few for from
    further get gets got had has have having he her here hers herself him himself his how i if in into is it
    its itself just let like may me might more most much must my myself need no nor not now of off often on
    once one only or other our ours ourselves out over own please same say says she should so some still
    such than that the their theirs them themselves then there these they this those though through thus to
    too under until up upon us very was we were what whats when where whether which while who whom whose why
    will with within without would yes yet you your yours yourself yourselves tell show explain mean means
    happen happens happened use used using work works way ways thing things something anything
    """.split()
)
# Words that point back at something said before: their presence marks a follow-up.
_REFERENCES = frozenset(
    "it its this that these those they them their there he she him her his one ones same such also else "
    "former latter above previous".split()
)
_OPENERS = ("and ", "but ", "or ", "so ", "what about", "how about", "then ", "also ")


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation."""

    role: Role
    content: str


def as_turns(history: Iterable[Turn | Mapping[str, Any]] | None) -> list[Turn]:
    """Validated turns from `Turn`s or `{"role", "content"}` mappings (empty ones left out).

    Raises:
        QueryError: a role other than user or assistant, a non-text content, or too much history.
    """
    turns: list[Turn] = []
    for position, item in enumerate(history or ()):
        role: Any
        content: Any
        if isinstance(item, Turn):
            role, content = item.role, item.content
        else:
            role, content = item.get("role"), item.get("content")
        if role not in ("user", "assistant"):
            raise QueryError(f"history[{position}].role is {role!r}; it must be 'user' or 'assistant'")
        if not isinstance(content, str):
            raise QueryError(f"history[{position}].content must be text")
        if len(content) > MAX_TURN_CHARS:
            raise QueryError(f"history[{position}] is {len(content)} characters; at most {MAX_TURN_CHARS} are accepted")
        if content.strip():
            turns.append(Turn(role, content.strip()))
    if len(turns) > MAX_TURNS:
        raise QueryError(f"history has {len(turns)} turns; at most {MAX_TURNS} are accepted")
    return turns


# --- offline: the earlier questions' words -------------------------------------------


def _content_words(text: str) -> list[str]:
    """Words that carry a topic, as written (case kept)."""
    words = _WORD.findall(text)
    return [w for w in words if w.lower() not in _STOPWORDS and (len(w) > 2 or any(c.isdigit() for c in w))]


def _stem(word: str) -> str:
    # Crude but enough to see "refresh" in "refreshes": compare on a common prefix.
    word = word.lower()
    return word[:6] if len(word) > 6 else word


def is_follow_up(question: str) -> bool:
    """True when the question leans on earlier turns: a reference word, an opener like
    "and ...", or hardly any words of its own."""
    lowered = question.strip().lower()
    words = [w.lower() for w in _WORD.findall(question)]
    if lowered.startswith(_OPENERS) or any(w in _REFERENCES for w in words):
        return True
    return len(_content_words(question)) <= 2


def salient_terms(
    question: str,
    history: Sequence[Turn],
    most: int = MAX_ADDED_TERMS,
    rarity: Callable[[str], float] | None = None,
) -> list[str]:
    """Content words of the earlier user turns that the question lacks, best first.

    A word's weight halves with each question between it and this one (the
    latest question counts most) and is multiplied by `rarity(word)` (e.g. the
    index's idf: a word every chunk holds finds nothing; one no chunk holds
    is left out); within a turn, earlier words come first.
    """
    if most < 1:
        return []
    own = {_stem(w) for w in _content_words(question)}
    weights: dict[str, tuple[float, int, str]] = {}
    order = 0
    user_turns = [t for t in history if t.role == "user"]
    for distance, turn in enumerate(reversed(user_turns)):
        weight = 0.5**distance
        for word in _content_words(turn.content):
            stem = _stem(word)
            order += 1
            if stem in own:
                continue
            known = weights.get(stem)
            if known is None:
                scale = 1.0 if rarity is None else _rarity(word, rarity)
                if scale <= 0:
                    continue
                weights[stem] = (weight * scale, order, word)
            else:
                weights[stem] = (known[0] * (1 + weight / 4), known[1], known[2])
    ranked = sorted(weights.values(), key=lambda item: (-item[0], item[1]))
    return [word for _, _, word in ranked[:most]]


def _rarity(word: str, rarity: Callable[[str], float]) -> float:
    # An index tokenizes "mxbai-embed-large-v1" into its parts: the rarest part speaks for it.
    parts = re.findall(r"[^\W_]{2,}", word)
    return max((rarity(part) for part in parts), default=0.0)


def standalone_offline(
    question: str,
    history: Sequence[Turn],
    most: int | None = None,
    rarity: Callable[[str], float] | None = None,
) -> str:
    """The follow-up with the earlier questions' salient words added (the question itself
    when there is no earlier user turn).

    A follow-up that refers back (`is_follow_up`) gets up to `MAX_ADDED_TERMS`
    words; one that names its own topic gets a few, so that a change of topic
    is not dragged back to the old one.
    """
    if most is None:
        most = MAX_ADDED_TERMS if is_follow_up(question) else MAX_ADDED_TERMS_SELF_CONTAINED
    terms = salient_terms(question, history, most, rarity)
    question = question.strip()
    return f"{question} {' '.join(terms)}" if terms else question


# --- with a chat model: a short rewrite prompt ----------------------------------------


def rewrite_messages(
    question: str, history: Sequence[Turn], counter: TokenCounter, budget: Budget
) -> list[dict[str, str]] | None:
    """The rewrite prompt with as many of the latest turns as `budget` allows, or None when
    not even the latest turn fits.

    Returns messages whose `count_messages` is at most `budget.prompt_tokens`.
    """
    limit = budget.prompt_tokens
    lines = [_turn_line(turn) for turn in history]
    head = "Conversation:\n"
    tail = f"\n\n{REWRITE_QUESTION_PREFIX}{question.strip()}{REWRITE_SUFFIX}"
    counts = counter.count_many([REWRITE_SYSTEM, head + tail, *lines])
    used = counts[0] + counts[1] + 2 * MESSAGE_OVERHEAD + MESSAGE_OVERHEAD  # overhead slack for the joins
    kept = 0
    for tokens in reversed(counts[2:]):
        if used + tokens + 1 > limit:
            break
        used += tokens + 1
        kept += 1
    while kept:
        messages = [
            {"role": "system", "content": REWRITE_SYSTEM},
            {"role": "user", "content": head + "\n".join(lines[len(lines) - kept :]) + tail},
        ]
        if count_messages(messages, counter) <= limit:
            return messages
        kept -= 1
    return None


def _turn_line(turn: Turn) -> str:
    if turn.role == "user":
        return f"User: {turn.content}"
    text = turn.content
    if len(text) > REWRITE_ASSISTANT_CHARS:
        text = text[:REWRITE_ASSISTANT_CHARS].rsplit(" ", 1)[0] + " ..."
    return f"Assistant: {text}"


def clean_rewrite(text: str, question: str) -> str | None:
    """The model's rewrite as one question, or None when it is unusable (empty or rambling)."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = line.removeprefix(REWRITE_QUESTION_PREFIX.strip()).strip().strip('"').strip("'").strip()
    if not line or len(line) > max(4 * len(question), 400):
        return None
    return line
