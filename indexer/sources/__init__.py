"""Reading files, directories, globs, uploads and JSON records into documents.

One reader module per format, chosen by suffix in `registry`:

    text         .txt .md .markdown (any encoding `decoding` can tell)
    html         .html .htm
    jsonl        .jsonl (BEIR corpora: one document per line)
    delimited    .csv .tsv (rows located by record number)
    pdf          .pdf (pages; needs the `documents` extra)
    word         .docx (needs the `documents` extra)
    slides       .pptx (slides; needs the `documents` extra)
    spreadsheet  .xlsx (sheets and rows; needs the `documents` extra)
    epub         .epub (chapters)

`scanning` walks paths, `scope` says which files a scan covers, `builder` joins
located parts into a document, `tables` renders rows, `records` validates JSON.
"""

from __future__ import annotations

from ..html_markdown import html_to_markdown
from .problems import ScanResult, SourceProblem, UnsupportedFile
from .records import documents_from_records
from .registry import DOCUMENTS_EXTRA, SUPPORTED_SUFFIXES, Origin, file_kind, read_bytes, upload_name
from .scanning import document_id, iter_documents, iter_files, read_file, read_uploads, scan
from .scope import in_scope

__all__ = [
    "DOCUMENTS_EXTRA",
    "Origin",
    "SUPPORTED_SUFFIXES",
    "ScanResult",
    "SourceProblem",
    "UnsupportedFile",
    "document_id",
    "documents_from_records",
    "file_kind",
    "html_to_markdown",
    "in_scope",
    "iter_documents",
    "iter_files",
    "read_bytes",
    "read_file",
    "read_uploads",
    "scan",
    "upload_name",
]
