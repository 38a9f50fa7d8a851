"""Where a hit is in its document, for people ("report.pdf p. 7") and for JSON (hits carry `location`)."""

from __future__ import annotations

from typing import Any, Mapping

from indexer.models import ScoredChunk

from .answer import Answer, answer_json, hit_json


def location_label(location: Mapping[str, Any] | None) -> str:
    """`p. 7`, `slide 3`, `sheet Q3 rows 12-30`, `row 4`, `ch. 2`; empty when there is none."""
    if not location:
        return ""
    parts: list[str] = []
    if "page" in location:
        parts.append(f"p. {location['page']}")
    if "slide" in location:
        parts.append(f"slide {location['slide']}")
    if "chapter" in location:
        parts.append(f"ch. {location['chapter']}")
    if "sheet" in location:
        parts.append(f"sheet {location['sheet']}")
    if "row" in location:
        last = location.get("last_row")
        parts.append(f"rows {location['row']}-{last}" if last is not None else f"row {location['row']}")
    return " ".join(parts)


def source_label(hit: ScoredChunk) -> str:
    """The document id, with the location when the format has one: `report.pdf p. 7`."""
    label = location_label(hit.chunk.location)
    return f"{hit.chunk.doc_id} {label}" if label else hit.chunk.doc_id


def located_hit_json(hit: ScoredChunk) -> dict[str, Any]:
    """A hit's JSON with its `location` (null when the format has none)."""
    data = hit_json(hit)
    data.setdefault("location", _location_json(hit))
    return data


def located_answer_json(answer: Answer) -> dict[str, Any]:
    """An answer's JSON whose sources (and retrieved context) carry their `location`."""
    data = answer_json(answer)
    by_id = {hit.chunk.chunk_id: hit for hit in [*answer.sources, *answer.retrieved]}
    for source in [*data.get("sources", []), *data.get("retrieved", [])]:
        hit = by_id.get(source.get("chunk_id"))
        source.setdefault("location", _location_json(hit) if hit else None)
    return data


def _location_json(hit: ScoredChunk) -> dict[str, Any] | None:
    return dict(hit.chunk.location) if hit.chunk.location else None
