"""POST /v1/files and GET /v1/documents over real uvicorn on loopback, with real files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from service.api import create_app
from service.config import Settings

from ..documents import PAGE_7_FACT, PAGE_7_QUESTION, docx_bytes, epub_bytes, pdf_bytes, xlsx_bytes
from ..serving import serve


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    index_dir = tmp_path_factory.mktemp("files") / "index"  # no index yet: the first upload makes it
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url:
        with httpx.Client(base_url=url, timeout=120) as http:
            yield http


def test_listing_before_any_upload_is_empty(client: httpx.Client) -> None:
    response = client.get("/v1/documents")
    assert response.status_code == 200
    assert response.json() == {"documents": [], "total": 0, "offset": 0, "limit": 50}


def test_upload_indexes_files_and_names_the_bad_ones(client: httpx.Client) -> None:
    files = [
        ("files", ("report.pdf", pdf_bytes(9), "application/pdf")),
        ("files", ("memo.docx", docx_bytes(), "application/octet-stream")),
        ("files", ("locked.pdf", pdf_bytes(1, password="pw"), "application/pdf")),
        ("files", ("blob.bin", b"\x00\x01", "application/octet-stream")),
    ]
    response = client.post("/v1/files", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["documents"] == ["report.pdf", "memo.docx"]
    assert body["added"] == 2 and body["updated"] == 0 and body["chunks"] >= 10
    assert [p["source"] for p in body["problems"]] == ["locked.pdf", "blob.bin"]
    assert "encrypted" in body["problems"][0]["reason"] and "unsupported" in body["problems"][1]["reason"]

    # Uploaded again: nothing changes.
    again = client.post("/v1/files", files=[("files", ("report.pdf", pdf_bytes(9), "application/pdf"))]).json()
    assert again["documents"] == ["report.pdf"] and again["unchanged"] == 1 and again["added"] == 0


def test_uploaded_pages_are_cited(client: httpx.Client) -> None:
    body = client.post("/v1/ask", json={"question": PAGE_7_QUESTION, "top_k": 4}).json()
    assert PAGE_7_FACT in body["answer"]
    cited = [body["sources"][n - 1] for n in body["cited"]]
    assert cited[0]["doc_id"] == "report.pdf" and cited[0]["location"] == {"page": 7}
    hits = client.post("/v1/search", json={"query": "offsite meeting harbour", "top_k": 3}).json()["results"]
    assert hits[0]["doc_id"] == "memo.docx" and hits[0]["location"] is None


def test_listing_is_paged_with_chunks_and_metadata(client: httpx.Client) -> None:
    client.post(
        "/v1/files",
        files=[("files", ("book.epub", epub_bytes(), "application/epub+zip")), ("files", ("figures.xlsx", xlsx_bytes(), "x"))],
    )
    everything = client.get("/v1/documents").json()
    assert everything["total"] == 4
    by_id = {d["doc_id"]: d for d in everything["documents"]}
    assert set(by_id) == {"report.pdf", "memo.docx", "book.epub", "figures.xlsx"}
    assert by_id["report.pdf"]["metadata"] == {"pages": 9} and by_id["report.pdf"]["source"] == "report.pdf"
    assert by_id["figures.xlsx"]["metadata"] == {"sheets": ["Q3", "Notes"]}
    assert all(d["chunks"] >= 1 for d in everything["documents"])
    page = client.get("/v1/documents", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 4 and page["offset"] == 1 and page["limit"] == 2
    assert [d["doc_id"] for d in page["documents"]] == [d["doc_id"] for d in everything["documents"][1:3]]
    assert client.get("/v1/documents", params={"limit": 0}).status_code == 422


def test_an_upload_can_be_deleted_and_a_form_without_files_is_refused(client: httpx.Client) -> None:
    assert client.delete("/v1/documents/memo.docx").status_code == 200
    assert "memo.docx" not in {d["doc_id"] for d in client.get("/v1/documents").json()["documents"]}
    response = client.post("/v1/files", data={"other": "x"}, files=[("nothing", ("a.txt", b"x", "text/plain"))])
    assert response.status_code == 422 and response.json()["error"]["type"] == "ValidationError"


def test_a_cli_index_of_the_working_directory_leaves_uploads_alone(tmp_path: Path) -> None:
    from indexer.sources import in_scope

    # Uploads are stored under their bare name; no scan of any directory covers them.
    assert not in_scope("report.pdf", [tmp_path, "."])
