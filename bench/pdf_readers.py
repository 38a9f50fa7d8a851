"""Compare PDF text extractors on one generated PDF: seconds per page and what a table looks like.

    .venv/bin/python bench/pdf_readers.py [PAGES | FILE.pdf]

Needs reportlab (the test extra) to write the PDF, and pypdf and pdfminer.six besides
pypdfium2 (`pip install pypdf pdfminer.six`); they are not dependencies of iorag.
"""

from __future__ import annotations

import io
import sys
import time

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle


def make_pdf(pages: int) -> bytes:
    styles = getSampleStyleSheet()
    story: list[object] = []
    for page in range(1, pages + 1):
        story.append(Paragraph(f"Section {page}", styles["Heading1"]))
        for n in range(12):
            story.append(Paragraph(f"Paragraph {n} of page {page}: " + "the quick brown fox jumps over the lazy dog " * 6, styles["BodyText"]))
        if page == 2:
            table = Table([["Region", "Q1", "Q2"], ["North", "120", "135"], ["South", "98", "101"]])
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
            story.append(table)
        story.append(PageBreak())
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4).build(story)
    return out.getvalue()


def with_pypdfium2(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        return [pdf[i].get_textpage().get_text_bounded() for i in range(len(pdf))]
    finally:
        pdf.close()


def with_pypdf(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def with_pdfminer(data: bytes) -> list[str]:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer

    return [
        "".join(el.get_text() for el in layout if isinstance(el, LTTextContainer))
        for layout in extract_pages(io.BytesIO(data))
    ]


def main() -> None:
    arg = sys.argv[1] if len(sys.argv) > 1 else "50"
    data = open(arg, "rb").read() if arg.endswith(".pdf") else make_pdf(int(arg))
    pages = len(with_pypdfium2(data))
    print(f"{arg}: {pages} pages, {len(data)} bytes")
    for name, read in (("pypdfium2", with_pypdfium2), ("pypdf", with_pypdf), ("pdfminer.six", with_pdfminer)):
        read(data)  # warm up imports
        started = time.perf_counter()
        texts = read(data)
        seconds = time.perf_counter() - started
        table = [line for line in texts[1].splitlines() if "North" in line or "Region" in line]
        chars = sum(len(t) for t in texts)
        print(f"{name:<13} {seconds:6.2f} s  {1000 * seconds / pages:6.1f} ms/page  {chars} chars  table rows: {table}")


if __name__ == "__main__":
    main()
