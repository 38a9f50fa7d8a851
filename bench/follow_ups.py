"""Follow-up questions on the sample corpus, offline: does retrieval stay on the conversation's topic?

Indexes corpora/ with the local model, then for each two-turn chat compares
the top-ranked document of the first question with that of the follow-up,
asked alone and asked with the first turn as history (the offline rewrite).
Chats of the second group change topic on purpose: there the follow-up with
history should find what the follow-up alone finds. Prints a markdown table.

    python bench/follow_ups.py

A small hand-written set (corpora/ has five documents): a check of behaviour,
not a quality benchmark.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer import Indexer  # noqa: E402
from service import RagService, Settings  # noqa: E402

#: (first question, follow-up that leans on it).
FOLLOW_UPS = [
    ("How does hybrid search merge dense and lexical rankings?", "What constant does it use?"),
    ("What does exit status 3 mean?", "And what should I do after it?"),
    ("What happens when IO Intelligence answers 429?", "And what if that header is missing?"),
    ("Which tokenizer does mxbai-embed-large-v1 use?", "And how many dimensions does it return?"),
    ("How does iorag pack chunks into the prompt budget?", "Which ones are left out first?"),
    ("How does iorag cut a document into chunks?", "And how are they counted?"),
    ("What is the context length of nvidia/AceMath-7B-Instruct?", "And of Llama-3.3-70B-Instruct?"),
    ("Can two indexers write the same index?", "What do readers see meanwhile?"),
    ("How do I switch to another embedding model?", "Does search keep working meanwhile?"),
    ("Where does the index live?", "Can I copy it to another machine?"),
]
#: (first question, a follow-up on another topic that names it).
TOPIC_CHANGES = [
    ("What happens when the quota runs out while indexing?", "How does BM25 rank chunks with stemmed words?"),
    ("How do I switch to another embedding model?", "Which errors does the HTTP API return?"),
    ("What does exit status 3 mean?", "How many dimensions does bge-multilingual-gemma2 return?"),
    ("Can two indexers write the same index?", "What is the context length of Llama-3.3-70B-Instruct?"),
    ("Where does the index live?", "How does the prompt budget drop chunks?"),
]


def top(rag: RagService, question: str, history: list[dict[str, str]] | None = None) -> str:
    return rag.ask(question, history=history, top_k=3).sources[0].chunk.doc_id


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        index_dir = Path(work) / "index"
        Indexer(index_dir).index([ROOT / "corpora"])
        with RagService(Settings(index_dir=index_dir)) as rag:
            kept_alone = kept_with = 0
            for first, follow_up in FOLLOW_UPS:
                wanted = top(rag, first)
                kept_alone += top(rag, follow_up) == wanted
                kept_with += top(rag, follow_up, [{"role": "user", "content": first}]) == wanted
            unchanged = 0
            for first, other in TOPIC_CHANGES:
                unchanged += top(rag, other, [{"role": "user", "content": first}]) == top(rag, other)
    print("| chats | measure | follow-up alone | with the conversation |")
    print("|---|---|---|---|")
    n = len(FOLLOW_UPS)
    print(f"| {n} follow-ups | top document = the first question's | {kept_alone}/{n} | {kept_with}/{n} |")
    m = len(TOPIC_CHANGES)
    print(f"| {m} changes of topic | top document = the new question's own | {m}/{m} | {unchanged}/{m} |")


if __name__ == "__main__":
    main()
