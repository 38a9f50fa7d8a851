"""Real PDF, DOCX, PPTX, XLSX and EPUB files, written by the libraries' own writing side."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

#: What page 7 of `pdf_bytes()` says, and a question only it answers.
PAGE_7_FACT = "The Lisbon warehouse ships orders with a cobalt blue ribbon every Thursday."
PAGE_7_QUESTION = "What colour ribbon does the Lisbon warehouse use?"


def pdf_bytes(pages: int = 9, *, scanned_page: int | None = None, password: str | None = None) -> bytes:
    """A PDF of `pages` pages: page 2 holds a table, page 7 the fact, `scanned_page` only an image."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

    styles = getSampleStyleSheet()
    story: list[object] = []
    for page in range(1, pages + 1):
        if page == scanned_page:
            story.append(Image(_png(), width=200, height=100))
            story.append(PageBreak())
            continue
        story.append(Paragraph(f"Chapter {page}: operations notes", styles["Heading1"]))
        story.append(Paragraph(f"This page describes routine number {page} of the depot handbook.", styles["BodyText"]))
        if page == 2:
            table = Table([["Region", "Q1", "Q2"], ["North", "120", "135"], ["South", "98", "101"]])
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
            story.append(table)
        if page == 7:
            story.append(Paragraph(PAGE_7_FACT, styles["BodyText"]))
        story.append(PageBreak())
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title="Depot handbook", encrypt=password)
    doc.build(story)
    return out.getvalue()


def _png() -> io.BytesIO:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(out, format="PNG")
    out.seek(0)
    return out


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Team memo"
    document.add_heading("Team memo", level=1)
    document.add_paragraph("The offsite meeting moves to the harbour conference room.")
    document.add_heading("Budget", level=2)
    document.add_paragraph("Travel is capped at four hundred euros per person.", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Item", "Cost"
    table.cell(1, 0).text, table.cell(1, 1).text = "Catering", "950"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_bytes() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    presentation = Presentation()
    for number, (title, body) in enumerate(
        [("Roadmap", "Launch the mobile app in spring."), ("Risks", "The payment provider changes its API in May.")],
        start=1,
    ):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if number == 2:
            shape = slide.shapes.add_table(2, 2, Inches(1), Inches(4), Inches(4), Inches(1))
            for (r, c), text in {(0, 0): "Risk", (0, 1): "Owner", (1, 0): "API change", (1, 1): "Dana"}.items():
                shape.table.cell(r, c).text = text
            slide.notes_slide.notes_text_frame.text = "Ask Dana for the migration date."
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Q3"
    sheet.append(["Region", "Revenue", "Manager"])
    for row in range(2, 40):
        sheet.append([f"Region {row}", row * 1000, f"Manager {row}"])
    sheet.append(["Atlantis", 777, "Captain Nemo"])
    other = workbook.create_sheet("Notes")
    other.append(["Figures are in euros and exclude VAT."])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def epub_bytes(*, encrypted: bool = False) -> bytes:
    """An EPUB 3 book of two chapters, zipped as the specification says (mimetype first, stored)."""
    chapters = {
        "ch1.xhtml": "<h1>The lighthouse</h1><p>The keeper lit the lamp at dusk.</p>",
        "ch2.xhtml": "<h1>The storm</h1><p>A schooner named Marigold ran aground on the reef.</p>",
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as book:
        book.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        items = "".join(
            f'<item id="c{i}" href="{name}" media-type="application/xhtml+xml"/>' for i, name in enumerate(chapters)
        )
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        book.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">x</dc:identifier>'
            "<dc:title>Tales of the coast</dc:title><dc:language>en</dc:language></metadata>"
            f"<manifest>{items}</manifest><spine>{spine}</spine></package>",
        )
        for name, body in chapters.items():
            book.writestr(
                f"OEBPS/{name}",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>{name}</title></head><body>{body}</body></html>",
            )
        if encrypted:
            book.writestr(
                "META-INF/encryption.xml",
                '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
                '<enc:CipherReference URI="OEBPS/ch1.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>',
            )
    return out.getvalue()


def write_mixed_folder(root: Path) -> Path:
    """The folder of the issue: PDF, DOCX, PPTX, XLSX, CSV, EPUB, Latin-1 text and a `.bin`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.pdf").write_bytes(pdf_bytes())
    (root / "memo.docx").write_bytes(docx_bytes())
    (root / "plan.pptx").write_bytes(pptx_bytes())
    (root / "figures.xlsx").write_bytes(xlsx_bytes())
    (root / "stock.csv").write_text("sku,name,count\nA1,anchor chain,12\nB2,brass bell,3\n", encoding="utf-8")
    (root / "book.epub").write_bytes(epub_bytes())
    (root / "notes-latin1.txt").write_bytes("Le café du port ouvre à six heures; la crème brûlée est à 4 €.".replace("€", "EUR").encode("latin-1"))
    (root / "blob.bin").write_bytes(bytes(range(256)))
    return root
