"""`.pdf` files through pypdfium2 (PDFium): the text of each page in reading order, located by page.

PDFium was chosen over pypdf and pdfminer.six for speed and for keeping table rows
on one line (docs/benchmarks.md). A page with no text but an image on it is a scan:
it is named in a problem, not indexed empty. Needs the `documents` extra.
"""

from __future__ import annotations

from typing import Iterator

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ..models import Document
from .builder import TextBuilder, plain
from .problems import SourceProblem
from .registry import Origin


def read(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            yield SourceProblem(origin.source, "encrypted PDF (it needs a password); not indexed")
        else:
            yield SourceProblem(origin.source, f"not a readable PDF (damaged or truncated?): {exc}")
        return
    builder = TextBuilder()
    scanned: list[int] = []
    try:
        pages = len(pdf)
        for index in range(pages):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_bounded()
                finally:
                    textpage.close()
                if text.strip():
                    builder.add(plain(text), {"page": index + 1})
                elif _has_image(page):
                    scanned.append(index + 1)
            finally:
                page.close()
        title = str(pdf.get_metadata_dict(skip_empty=True).get("Title", ""))
    except pdfium.PdfiumError as exc:
        yield SourceProblem(origin.source, f"not a readable PDF (damaged or truncated?): {exc}")
        return
    finally:
        pdf.close()
    if scanned:
        pages_named = ", ".join(map(str, scanned))
        yield SourceProblem(
            origin.source,
            f"page{'s' if len(scanned) > 1 else ''} {pages_named} "
            f"{'have' if len(scanned) > 1 else 'has'} no text layer (scanned?); not indexed (OCR it first)",
        )
    if builder.empty:
        if not scanned:
            yield SourceProblem(origin.source, "empty document")
        return
    metadata: dict[str, object] = {"pages": pages}
    if scanned:
        metadata["pages_without_text"] = scanned
    yield builder.document(origin, title=title, metadata=metadata)


def _has_image(page: pdfium.PdfPage) -> bool:
    return next(iter(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])), None) is not None
