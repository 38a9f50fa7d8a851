"""Each format's reader on real files written by the formats' own libraries; bad files are named."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from indexer.models import Document
from indexer.sources import Origin, SourceProblem, read_bytes, read_uploads, scan

from ..documents import PAGE_7_FACT, docx_bytes, epub_bytes, pdf_bytes, pptx_bytes, write_mixed_folder, xlsx_bytes


def read(name: str, data: bytes) -> tuple[list[Document], list[SourceProblem]]:
    found = list(read_bytes(data, Origin(source=f"/in/{name}", doc_id=name, name=name)))
    return [d for d in found if isinstance(d, Document)], [p for p in found if isinstance(p, SourceProblem)]


def located(doc: Document) -> dict[str, str]:
    """Each segment's text, keyed by its location rendered compactly."""
    return {",".join(f"{k}={v}" for k, v in s.location.items()): doc.text[s.start : s.end] for s in doc.segments}


# -- PDF ---------------------------------------------------------------------------------


def test_pdf_text_per_page_with_table_rows() -> None:
    [doc], problems = read("report.pdf", pdf_bytes(9))
    assert problems == []
    assert doc.title == "Depot handbook" and doc.metadata == {"pages": 9}
    pages = located(doc)
    assert list(pages) == [f"page={n}" for n in range(1, 10)]
    assert PAGE_7_FACT in pages["page=7"] and PAGE_7_FACT not in pages["page=6"]
    # The table stays in rows: each row's cells on one line.
    lines = pages["page=2"].splitlines()
    assert "Region Q1 Q2" in lines and "North 120 135" in lines and "South 98 101" in lines


def test_pdf_scanned_page_is_named_not_indexed_empty() -> None:
    [doc], problems = read("scan.pdf", pdf_bytes(4, scanned_page=3))
    assert [p.reason for p in problems] == ["page 3 has no text layer (scanned?); not indexed (OCR it first)"]
    assert problems[0].source == "/in/scan.pdf"
    assert [s.location["page"] for s in doc.segments] == [1, 2, 4]
    assert doc.metadata == {"pages": 4, "pages_without_text": [3]}


def test_pdf_encrypted_and_damaged_are_problems() -> None:
    docs, problems = read("locked.pdf", pdf_bytes(2, password="s3cret"))
    assert docs == [] and [p.reason for p in problems] == ["encrypted PDF (it needs a password); not indexed"]
    docs, problems = read("junk.pdf", b"%PDF-1.4\nthis is not a pdf")
    assert docs == [] and problems[0].reason.startswith("not a readable PDF")


def test_truncated_pdf_is_named() -> None:
    data = pdf_bytes(9)
    docs, problems = read("cut.pdf", data[: len(data) // 3])
    assert docs == [] and [p.source for p in problems] == ["/in/cut.pdf"]
    assert problems[0].reason.startswith("not a readable PDF (damaged or truncated?)")


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "indexer.sources.pdf", raising=False)
    monkeypatch.setitem(sys.modules, "pypdfium2", None)  # import now fails as if not installed
    docs, problems = read("report.pdf", pdf_bytes(1))
    assert docs == []
    assert problems[0].reason.startswith("reading .pdf files needs the optional 'documents' extra")
    assert "pip install 'iorag[documents]'" in problems[0].reason


# -- Office ------------------------------------------------------------------------------


def test_docx_headings_lists_and_tables() -> None:
    [doc], problems = read("memo.docx", docx_bytes())
    assert problems == [] and doc.title == "Team memo" and doc.segments == ()
    assert "# Team memo" in doc.text and "## Budget" in doc.text
    assert "## Budget\n\n- Travel is capped at four hundred euros per person." in doc.text
    assert "Item | Cost\nItem: Catering; Cost: 950" in doc.text


def test_pptx_slides_tables_and_notes() -> None:
    [doc], problems = read("plan.pptx", pptx_bytes())
    assert problems == [] and doc.metadata == {"slides": 2} and doc.title == "Roadmap"
    slides = located(doc)
    assert slides["slide=1"].startswith("# Roadmap") and "mobile app" in slides["slide=1"]
    assert "Risk: API change; Owner: Dana" in slides["slide=2"]
    assert "Notes: Ask Dana for the migration date." in slides["slide=2"]


def test_xlsx_rows_keep_sheet_row_and_column_names() -> None:
    [doc], problems = read("figures.xlsx", xlsx_bytes())
    assert problems == [] and doc.metadata == {"sheets": ["Q3", "Notes"]}
    rows = located(doc)
    assert rows["sheet=Q3,row=1"] == "Region | Revenue | Manager"
    assert rows["sheet=Q3,row=40"] == "Region: Atlantis; Revenue: 777; Manager: Captain Nemo"
    assert rows["sheet=Notes,row=1"] == "Figures are in euros and exclude VAT."
    assert "# Q3" in doc.text and "# Notes" in doc.text


@pytest.mark.parametrize("name", ["memo.docx", "plan.pptx", "figures.xlsx"])
def test_office_truncated_or_encrypted_are_problems(name: str) -> None:
    data = {"memo.docx": docx_bytes, "plan.pptx": pptx_bytes, "figures.xlsx": xlsx_bytes}[name]()
    docs, problems = read(name, data[: len(data) // 2])
    assert docs == [] and "damaged" in problems[0].reason
    # What Office writes for a password-protected file: an OLE compound file.
    docs, problems = read(name, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    assert docs == [] and problems[0].reason.startswith("encrypted (password-protected)")


# -- CSV, EPUB, text ---------------------------------------------------------------------


def test_csv_rows_and_sniffed_delimiter() -> None:
    [doc], _ = read("stock.csv", "sku;name;count\nA1;anchor chain;12\n".encode("utf-8"))
    assert located(doc) == {"row=1": "sku | name | count", "row=2": "sku: A1; name: anchor chain; count: 12"}
    [doc], _ = read("plain.tsv", b"10\t20\n30\t40\n")  # no header: rows as cells
    assert doc.text == "10 | 20\n30 | 40"


def test_epub_chapters_in_spine_order() -> None:
    [doc], problems = read("book.epub", epub_bytes())
    assert problems == [] and doc.title == "Tales of the coast" and doc.metadata == {"chapters": 2}
    chapters = located(doc)
    assert chapters["chapter=1"].startswith("# The lighthouse")
    assert "schooner named Marigold" in chapters["chapter=2"]


def test_epub_encrypted_or_broken() -> None:
    docs, problems = read("drm.epub", epub_bytes(encrypted=True))
    assert docs == [] and problems[0].reason == "encrypted EPUB (DRM); not indexed"
    docs, problems = read("cut.epub", epub_bytes()[:300])
    assert docs == [] and problems[0].reason.startswith("not a readable EPUB")


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        ("Le café est très chaud, où est la gare?".encode("latin-1"), "Le café est très chaud, où est la gare?", "cp1252"),
        ("Straße\r\nGröße".encode("utf-16"), "Straße\nGröße", "utf-16"),
        ("plain words, twice over".encode("utf-16-le"), "plain words, twice over", "utf-16"),
        ("Привет, как дела? Это тест кодировки.".encode("cp1251"), "Привет, как дела? Это тест кодировки.", "cp1251"),
        ("\ufeffcafé".encode("utf-8"), "café", None),
    ],
)
def test_text_in_other_encodings_is_decoded_and_noted(data: bytes, text: str, encoding: str | None) -> None:
    [doc], problems = read("notes.txt", data)
    assert problems == [] and doc.text == text
    assert doc.metadata == ({"encoding": encoding} if encoding else {})


# -- scans and uploads -------------------------------------------------------------------


def test_mixed_folder_reads_everything_but_the_bin(tmp_path: Path) -> None:
    root = write_mixed_folder(tmp_path / "team")
    result = scan([root], base=root)
    assert result.problems == []
    assert result.unsupported == {".bin": 1}
    assert sorted(d.id for d in result.documents) == [
        "book.epub", "figures.xlsx", "memo.docx", "notes-latin1.txt", "plan.pptx", "report.pdf", "stock.csv"
    ]


def test_a_folder_of_only_pdfs(tmp_path: Path) -> None:
    for name in ("a.pdf", "b.pdf"):
        (tmp_path / name).write_bytes(pdf_bytes(2))
    result = scan([tmp_path], base=tmp_path)
    assert [d.id for d in result.documents] == ["a.pdf", "b.pdf"] and result.problems == []


def test_bad_files_are_named_and_the_rest_is_read(tmp_path: Path) -> None:
    (tmp_path / "good.pdf").write_bytes(pdf_bytes(2))
    (tmp_path / "locked.pdf").write_bytes(pdf_bytes(2, password="x"))
    (tmp_path / "cut.docx").write_bytes(docx_bytes()[:500])
    result = scan([tmp_path], base=tmp_path)
    assert [d.id for d in result.documents] == ["good.pdf"]
    assert sorted(Path(p.source).name for p in result.problems) == ["cut.docx", "locked.pdf"]


def test_uploads_use_the_file_name_and_never_a_path() -> None:
    result = read_uploads([("../../etc/report.pdf", pdf_bytes(2)), ("C:\\docs\\memo.docx", docx_bytes()), ("x.bin", b"1")])
    assert [(d.id, d.source) for d in result.documents] == [("report.pdf", "report.pdf"), ("memo.docx", "memo.docx")]
    assert [p.source for p in result.problems] == ["x.bin"]
