"""Indexer: incremental, resumable, exactly-once embedding, equal to a clean build."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import IndexLockedError, QuotaExhaustedError
from indexer.models import Document
from indexer.pipeline import Indexer
from indexer.store import IndexDirectory

from ..conftest import SAMPLE_DOCS, HashEmbedder, write_corpus


def snapshot_state(index_dir: Path) -> tuple[list[str], list[list[str]]]:
    """What 'equal index' means here: the chunks sent to the model, and what each finds."""
    with IndexDirectory(index_dir).open_current() as snap:
        chunks = sorted(snap.chunks(), key=lambda c: c.embedding_text)
        texts = [c.embedding_text for c in chunks]
        vectors = snap.vectors_for([c.chunk_id for c in chunks])
        found = [[hit.chunk.embedding_text for hit in row] for row in snap.search(vectors, 3)]
        return texts, found


def test_first_run_embeds_every_chunk_once_and_publishes(corpus: Path, tmp_path: Path) -> None:
    embedder = HashEmbedder()
    report = Indexer(tmp_path / "idx", embedder=embedder).index([corpus])
    assert report.published and report.documents == 4
    assert report.chunks_embedded == report.chunks_to_embed == len(embedder.embedded)
    assert len(set(embedder.embedded)) == len(embedder.embedded), "a text was embedded twice"
    with IndexDirectory(tmp_path / "idx").open_current() as snap:
        assert snap.manifest.chunks == report.chunks
        assert snap.manifest.embedding_model == embedder.model.id


def test_rerun_on_unchanged_corpus_sends_nothing(corpus: Path, tmp_path: Path) -> None:
    Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    first = IndexDirectory(tmp_path / "idx").current_id()
    embedder = HashEmbedder()
    report = Indexer(tmp_path / "idx", embedder=embedder).index([corpus])
    assert embedder.batches == []
    assert report.chunks_to_embed == 0 and report.unchanged == 4
    assert not report.published and IndexDirectory(tmp_path / "idx").current_id() == first


def test_editing_a_document_embeds_only_its_changed_chunks(corpus: Path, tmp_path: Path) -> None:
    Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    path = corpus / "cats.md"
    path.write_text(path.read_text().replace("mostly fish and chicken", "mostly fish"), encoding="utf-8")
    embedder = HashEmbedder()
    report = Indexer(tmp_path / "idx", embedder=embedder).index([corpus])
    assert report.updated == 1 and report.unchanged == 3
    assert embedder.embedded and all("fish" in text for text in embedder.embedded)
    assert not any("Dogs" in text for text in embedder.embedded)


def test_a_deleted_file_leaves_the_index(corpus: Path, tmp_path: Path) -> None:
    Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    (corpus / "dogs.md").unlink()
    report = Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    assert report.removed == 1 and report.documents == 3
    with IndexDirectory(tmp_path / "idx").open_current() as snap:
        assert all(c.doc_id != "dogs.md" and "Dogs" not in c.text for c in snap.chunks())


def test_paths_outside_the_run_are_left_alone(tmp_path: Path) -> None:
    a = write_corpus(tmp_path / "a", {"one.txt": "Apples are red."})
    b = write_corpus(tmp_path / "b", {"two.txt": "Bananas are yellow."})
    Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([a])
    report = Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([b])
    assert report.documents == 2 and report.removed == 0


def test_dry_run_predicts_the_real_run(corpus: Path, tmp_path: Path) -> None:
    dry = Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus], dry_run=True)
    assert not (tmp_path / "idx").exists(), "a dry run must not write"
    embedder = HashEmbedder()
    real = Indexer(tmp_path / "idx", embedder=embedder).index([corpus])
    assert dry.chunks_to_embed == real.chunks_embedded
    assert dry.requests_planned == len(embedder.batches)
    assert dry.tokens_to_embed == real.tokens_embedded


def test_quota_exhaustion_keeps_progress_and_a_rerun_completes_without_duplicates(tmp_path: Path) -> None:
    docs = {f"doc{i:02d}.txt": f"Document number {i} talks about topic {i * 7}. " * 3 for i in range(30)}
    corpus = write_corpus(tmp_path / "corpus", docs)
    embedder = HashEmbedder()
    embedder.fail_after = 3
    with pytest.raises(QuotaExhaustedError) as caught:
        Indexer(tmp_path / "idx", embedder=embedder).index([corpus])
    assert "rerun" in caught.value.user_message() or "left" in str(caught.value)
    first_part = embedder.embedded
    assert IndexDirectory(tmp_path / "idx").current_id() is None, "nothing published before completion"

    resumed = HashEmbedder()
    report = Indexer(tmp_path / "idx", embedder=resumed).index([corpus])
    assert report.published
    assert not set(first_part) & set(resumed.embedded), "a chunk was paid for twice"
    assert len(first_part) + len(resumed.embedded) == report.chunks


def test_second_writer_is_refused(corpus: Path, tmp_path: Path) -> None:
    directory = IndexDirectory(tmp_path / "idx")
    with directory.writer():
        with pytest.raises(IndexLockedError):
            Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])


def test_add_and_delete_documents_by_id(tmp_path: Path) -> None:
    indexer = Indexer(tmp_path / "idx", embedder=HashEmbedder())
    report = indexer.add_documents([Document(id="a", text="Alpha text here."), Document(id="b", text="Beta text.")])
    assert report.added == 2 and report.documents == 2
    report = indexer.delete_documents(["a", "missing"])
    assert report.removed == 1 and report.documents == 1 and report.missing_ids == ["missing"]


def test_model_switch_builds_beside_and_switches_when_complete(corpus: Path, tmp_path: Path) -> None:
    Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    directory = IndexDirectory(tmp_path / "idx")
    old = directory.current_id()
    other = HashEmbedder(model_id="test/hash-other", dims=16)
    other.fail_after = 1
    with pytest.raises(QuotaExhaustedError):
        Indexer(tmp_path / "idx", embedder=other).index([corpus])
    assert directory.current_id() == old, "the old index keeps serving until the new one is complete"
    report = Indexer(tmp_path / "idx", embedder=HashEmbedder(model_id="test/hash-other", dims=16)).index([corpus])
    with directory.open_current() as snap:
        assert snap.manifest.embedding_model == "test/hash-other" and snap.manifest.dims == 16
        assert snap.manifest.documents == report.documents == 4


texts = st.sampled_from(
    [
        "Rivers flow to the sea.",
        "Mountains are tall. Snow covers them in winter.",
        "# Title\n\nA paragraph.\n\n## Part\n\nAnother paragraph with 12345 digits.",
        "Short.",
        "Long text " * 40,
    ]
)
operations = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), st.sampled_from(["a.txt", "b.md", "c/d.txt", "e.txt"]), texts),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_any_edit_sequence_equals_a_clean_build(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    base = tmp_path_factory.mktemp("seq")
    corpus = base / "corpus"
    corpus.mkdir()
    embedder = HashEmbedder()
    files: dict[str, str] = {}
    for op, name, text in ops:
        path = corpus / name
        if op == "put":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            files[name] = text
        elif path.exists():
            path.unlink()
            files.pop(name)
        if files:
            Indexer(base / "inc", embedder=embedder).index([corpus])
    if not files:
        return
    # Idempotent: one more run changes nothing and sends nothing.
    before = len(embedder.batches)
    Indexer(base / "inc", embedder=embedder).index([corpus])
    assert len(embedder.batches) == before
    clean = base / "clean"
    write_corpus(clean, files)
    Indexer(base / "clean-idx", embedder=HashEmbedder()).index([clean])
    assert snapshot_state(base / "inc") == snapshot_state(base / "clean-idx")
    assert len(set(embedder.embedded)) == len(embedder.embedded), "a text was embedded twice"


def test_async_api(corpus: Path, tmp_path: Path) -> None:
    async def run() -> int:
        indexer = Indexer(tmp_path / "idx", embedder=HashEmbedder())
        report = await indexer.aindex([corpus])
        return report.documents

    assert asyncio.run(run()) == len(SAMPLE_DOCS)


def test_a_file_that_turns_unreadable_keeps_its_last_good_version(corpus: Path, tmp_path: Path) -> None:
    Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    (corpus / "cats.md").write_bytes(b"# Cats\n\n\x00\x01\x02 broken")
    report = Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    assert report.documents == 4 and report.removed == 0
    assert any(p.source.endswith("cats.md") and p.reason == "binary file" for p in report.problems)
    (corpus / "cats.md").write_text("   \n", encoding="utf-8")
    report = Indexer(tmp_path / "idx", embedder=HashEmbedder()).index([corpus])
    assert report.documents == 3 and report.removed == 1, "an emptied file is a deletion"
