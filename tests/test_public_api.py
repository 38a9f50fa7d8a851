"""The public names of the packages, pinned; the one direction of imports; where faiss and sqlite3 may appear."""

from __future__ import annotations

import ast
from pathlib import Path

import indexer
import service

ROOT = Path(__file__).resolve().parents[1]


def test_indexer_exports() -> None:
    assert indexer.__all__ == sorted(indexer.__all__)
    assert {"Indexer", "Document", "IndexReport", "IoragError", "make_embedder"} <= set(indexer.__all__)
    for name in indexer.__all__:
        assert hasattr(indexer, name), name


def test_service_exports() -> None:
    assert service.__all__ == sorted(service.__all__)
    assert {"RagService", "Settings", "Answer", "Turn", "Embeddings"} <= set(service.__all__)
    for name in service.__all__:
        assert hasattr(service, name), name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_indexer_never_imports_service_and_frameworks_stay_at_the_edges() -> None:
    for path in (ROOT / "indexer").rglob("*.py"):
        imported = _imports(path)
        assert not any(name.split(".")[0] == "service" for name in imported), path
        assert not {"fastapi", "click"} & {name.split(".")[0] for name in imported}, path
    for path in (ROOT / "service").rglob("*.py"):
        top = {name.split(".")[0] for name in _imports(path)}
        if "fastapi" in top:
            assert "api" in path.relative_to(ROOT / "service").parts, path
        if "click" in top:
            assert path.name == "cli.py", path
        assert "httpx" not in top and "faiss" not in top, path


def test_only_the_store_package_touches_faiss_and_sqlite() -> None:
    store = ROOT / "indexer" / "store"
    for path in (ROOT / "indexer").rglob("*.py"):
        top = {name.split(".")[0] for name in _imports(path)}
        if store not in path.parents:
            assert not {"faiss", "sqlite3", "pymilvus"} & top, path
        else:
            # One file per vector backend, each the only importer of its library.
            if "faiss" in top:
                assert path.relative_to(store).as_posix() == "dense/faiss.py", path
            if "pymilvus" in top:
                assert path.relative_to(store).as_posix() == "dense/milvus.py", path
    for path in (ROOT / "service").rglob("*.py"):
        top = {name.split(".")[0] for name in _imports(path)}
        assert not {"sqlite3", "pymilvus"} & top, path


def test_store_exports() -> None:
    import indexer.store as store

    assert store.__all__ == sorted(store.__all__)
    assert store.__all__ == [
        "DocumentEntry", "DocumentRecord", "DocumentSummary", "EmbeddingCache", "IndexDirectory", "IndexWriter",
        "Manifest", "Snapshot",
    ]
    for name in store.__all__:
        assert hasattr(store, name), name


def test_sources_exports() -> None:
    import indexer.sources as sources

    assert sources.__all__ == sorted(sources.__all__)
    assert sources.__all__ == [
        "DOCUMENTS_EXTRA", "Origin", "SUPPORTED_SUFFIXES", "ScanResult", "SourceProblem", "UnsupportedFile",
        "document_id", "documents_from_records", "file_kind", "html_to_markdown", "in_scope", "iter_documents",
        "iter_files", "read_bytes", "read_file", "read_uploads", "scan", "upload_name",
    ]
    for name in sources.__all__:
        assert hasattr(sources, name), name
