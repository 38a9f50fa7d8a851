"""JSON records (`{"id", "text", "title"?, "metadata"?}`) to documents, for JSONL files and the API."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..errors import SourceError
from ..models import Document


def documents_from_records(records: Iterable[Mapping[str, Any]], *, source: str = "api") -> list[Document]:
    """Validate `{"id", "text", "title"?, "metadata"?}` records (or `_id`) into documents.

    Args:
        records: Parsed JSON objects, e.g. the body of `POST /v1/documents`.
        source: What to record as each document's source.

    Returns:
        One document per record, in order.

    Raises:
        SourceError: A record is malformed or repeats an earlier id; the message names it.
    """
    documents: list[Document] = []
    first_index: dict[str, int] = {}
    for index, record in enumerate(records):
        doc = document_from_record(record, where=f"record {index}", source=source, extra={})
        if doc.id in first_index:
            raise SourceError(
                f"record {index}", f"duplicate id {doc.id!r} (first in record {first_index[doc.id]})"
            )
        first_index[doc.id] = index
        documents.append(doc)
    return documents


def document_from_record(record: Any, *, where: str, source: str, extra: Mapping[str, Any]) -> Document:
    """One record to a document.

    Raises:
        SourceError: the record is malformed; the message names it (`where`).
    """
    if not isinstance(record, Mapping):
        raise SourceError(where, f"expected a JSON object, got {type(record).__name__}")
    raw_id = record.get("_id", record.get("id"))
    if raw_id is None:
        raise SourceError(where, 'missing id ("_id" or "id")')
    # bool is an int in Python, but `true` is not an id anyone meant.
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise SourceError(where, f"id must be a string or an integer, got {type(raw_id).__name__}")
    doc_id = str(raw_id)
    if not doc_id.strip():
        raise SourceError(where, "empty id")
    where = f"{where} (id {doc_id!r})"
    text = record.get("text")
    if text is None:
        raise SourceError(where, "missing text")
    if not isinstance(text, str):
        raise SourceError(where, f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise SourceError(where, "empty document")
    title = record.get("title")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise SourceError(where, f"title must be a string, got {type(title).__name__}")
    metadata = record.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise SourceError(where, f"metadata must be an object, got {type(metadata).__name__}")
    for name, value in (("id", doc_id), ("title", title), ("text", text)):
        if not _encodable(value):
            # JSON can carry "\ud800"; no tokenizer or file format downstream can.
            raise SourceError(where, f"{name} contains an unpaired surrogate")
    return Document(
        id=doc_id,
        text=normalize_newlines(text),
        title=normalize_newlines(title).strip(),
        metadata={**metadata, **extra},
        source=source,
    )


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
