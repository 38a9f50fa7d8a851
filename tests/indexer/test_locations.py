"""Locations (page, slide, sheet and row) from documents through the chunker and the store to hits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.errors import StoreError
from indexer.chunking import ChunkingConfig, chunk_document
from indexer.models import Document, Segment
from indexer.pipeline import Indexer
from indexer.store import IndexDirectory
from indexer.tokens import counter_for
from indexer.catalog import default_catalog

from ..conftest import HashEmbedder
from ..documents import pdf_bytes, xlsx_bytes

COUNTER = counter_for(default_catalog().get("local/all-MiniLM-L6-v2"))


def paged(*pages: str) -> Document:
    text, segments = "", []
    for number, page in enumerate(pages, start=1):
        if text:
            text += "\n\n"
        start = len(text)
        text += page
        segments.append(Segment(start, len(text), {"page": number}))
    return Document(id="doc.pdf", text=text, title="Doc", segments=tuple(segments))


def test_a_chunk_never_spans_two_pages() -> None:
    doc = paged("Short first page.", "Second page, also short.", "Third page.")
    chunks = chunk_document(doc, COUNTER, ChunkingConfig(max_tokens=200))
    # Everything would fit one chunk; pages still cut it.
    assert [(c.text, c.location) for c in chunks] == [
        ("Short first page.", {"page": 1}),
        ("Second page, also short.", {"page": 2}),
        ("Third page.", {"page": 3}),
    ]


def test_a_long_page_is_cut_within_itself_and_every_piece_keeps_its_page() -> None:
    long_page = " ".join(f"Sentence {n} of the long page." for n in range(120))
    doc = paged("Intro.", long_page, "Outro.")
    chunks = chunk_document(doc, COUNTER, ChunkingConfig(max_tokens=64, overlap=8))
    pages = [c.location["page"] for c in chunks if c.location]
    assert pages[0] == 1 and pages[-1] == 3 and pages.count(2) > 3
    for chunk in chunks:
        segment = doc.segments[chunk.location["page"] - 1]
        assert segment.start <= chunk.start and chunk.end <= segment.end


def test_rows_of_a_sheet_share_chunks_and_say_which_rows() -> None:
    lines = [f"Item: thing {n}; Count: {n}" for n in range(1, 31)]
    text, segments = "", []
    for number, line in enumerate(lines, start=2):
        if text:
            text += "\n"
        segments.append(Segment(len(text), len(text) + len(line), {"sheet": "Q3", "row": number}))
        text += line
    doc = Document(id="book.xlsx", text=text, segments=tuple(segments))
    chunks = chunk_document(doc, COUNTER, ChunkingConfig(max_tokens=80))
    assert len(chunks) > 1
    first, last = chunks[0].location, chunks[-1].location
    assert first["sheet"] == "Q3" and first["row"] == 2 and first["last_row"] > 2
    assert last["last_row"] == 31
    # Consecutive chunks pick up where the last left off.
    for a, b in zip(chunks, chunks[1:]):
        assert b.location["row"] == a.location["last_row"] + 1


def test_locations_are_stored_and_survive_rechunking(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    embedder = HashEmbedder(limit=128)
    doc = paged("Alpha page text.", "Beta page text.")
    Indexer(index, embedder=embedder).add_documents([doc])
    with IndexDirectory(index).open_current() as snap:
        assert [c.location for c in snap.chunks()] == [{"page": 1}, {"page": 2}]
        assert snap.documents()["doc.pdf"].segments == doc.segments
    # Another chunk size re-chunks the stored record (its source is gone): the pages come back.
    Indexer(index, embedder=embedder, chunk_tokens=100).add_documents([])
    with IndexDirectory(index).open_current() as snap:
        assert snap.manifest.extra["chunking"]["max_tokens"] == 100
        assert [c.location for c in snap.chunks()] == [{"page": 1}, {"page": 2}]


def test_a_pdf_and_a_workbook_through_the_indexer(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "report.pdf").write_bytes(pdf_bytes(9))
    (tmp_path / "docs" / "figures.xlsx").write_bytes(xlsx_bytes())
    report = Indexer(tmp_path / "idx", embedder=HashEmbedder(limit=128)).index([tmp_path / "docs"])
    assert report.problems == [] and report.documents == 2
    with IndexDirectory(tmp_path / "idx").open_current() as snap:
        chunks = snap.chunks()
        listing, total = snap.list_documents(0, 10)
    by_doc: dict[str, list[dict[str, object]]] = {}
    for chunk in chunks:
        assert chunk.location is not None
        by_doc.setdefault(Path(chunk.doc_id).name, []).append(dict(chunk.location))
    assert sorted({loc["page"] for loc in by_doc["report.pdf"]}) == list(range(1, 10))
    assert {loc["sheet"] for loc in by_doc["figures.xlsx"]} == {"Q3", "Notes"}
    assert total == 2 and {d.metadata.get("pages") for d in listing} == {9, None}
    assert sum(d.chunks for d in listing) == len(chunks)


def test_list_documents_pages(tmp_path: Path) -> None:
    docs = [Document(id=f"d{n}", text=f"Document number {n}.", metadata={"n": n}) for n in range(5)]
    Indexer(tmp_path / "idx", embedder=HashEmbedder()).add_documents(docs)
    with IndexDirectory(tmp_path / "idx").open_current() as snap:
        page, total = snap.list_documents(offset=1, limit=2)
        rest, _ = snap.list_documents(offset=4, limit=10)
    assert total == 5 and [d.doc_id for d in page] == ["d1", "d2"] and [d.doc_id for d in rest] == ["d4"]
    assert page[0].chunks == 1 and page[0].metadata == {"n": 1} and page[0].source == ""


def test_an_index_from_before_locations_is_refused_with_how_to_rebuild(tmp_path: Path) -> None:
    # Indexes of the format before generations (format 1, which had no locations) are not
    # migrated: opening one says to rebuild, and rebuilding reuses the cached vectors.
    index = tmp_path / "idx"
    Indexer(index, embedder=HashEmbedder()).add_documents([paged("One.", "Two.")])
    snapshot = IndexDirectory(index).current_id()
    (index / "CURRENT").write_text(json.dumps({"format": 1, "snapshot": snapshot}))
    with pytest.raises(StoreError, match="index format 1 is not readable by this version.*rebuild") as info:
        IndexDirectory(index).open_current()
    assert "iorag index" in (info.value.hint or "")


