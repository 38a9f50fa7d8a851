"""`.epub` books read as what they are, a zip of XHTML: the spine's chapters in order, located by chapter.

EbookLib is AGPL, so the few steps are done here: META-INF/container.xml names the
package document, whose spine orders the chapters; each chapter goes through the
same HTML reader as `.html` files. A book whose chapters are encrypted (DRM) is a
problem; obfuscated fonts alone are not.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from typing import Iterator
from urllib.parse import unquote
from xml.etree import ElementTree

from ..html_markdown import html_to_markdown
from ..models import Document
from .builder import TextBuilder
from .decoding import NotText, decode_text
from .problems import SourceProblem
from .registry import Origin

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_XENC = "{http://www.w3.org/2001/04/xmlenc#}"
_CHAPTER_TYPES = ("application/xhtml+xml", "text/html")


class _BadBook(Exception):
    pass


def read(data: bytes, origin: Origin) -> Iterator[Document | SourceProblem]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            title, chapters = _spine(book)
            encrypted = _encrypted(book)
            if any(path in encrypted for path in chapters):
                yield SourceProblem(origin.source, "encrypted EPUB (DRM); not indexed")
                return
            builder = TextBuilder()
            number = 0
            for path in chapters:
                try:
                    page, _ = decode_text(book.read(path))
                except KeyError:
                    raise _BadBook(f"the spine names {path}, which the book lacks") from None
                except NotText as exc:
                    raise _BadBook(f"{path}: {exc}") from None
                _, text = html_to_markdown(page)
                if text.strip():
                    number += 1
                    builder.add(text, {"chapter": number})
    except (zipfile.BadZipFile, ElementTree.ParseError, _BadBook, EOFError, OSError) as exc:
        yield SourceProblem(origin.source, f"not a readable EPUB (damaged or truncated?): {exc}"[:300])
        return
    if builder.empty:
        yield SourceProblem(origin.source, "empty document")
        return
    yield builder.document(origin, title=title, metadata={"chapters": number})


def _spine(book: zipfile.ZipFile) -> tuple[str, list[str]]:
    """The book's title and its chapters' paths inside the zip, in reading order."""
    try:
        container = ElementTree.fromstring(book.read("META-INF/container.xml"))
    except KeyError:
        raise _BadBook("no META-INF/container.xml") from None
    rootfile = container.find(f"{_CONTAINER}rootfiles/{_CONTAINER}rootfile")
    package_path = rootfile.get("full-path") if rootfile is not None else None
    if not package_path:
        raise _BadBook("container.xml names no package document")
    try:
        package = ElementTree.fromstring(book.read(package_path))
    except KeyError:
        raise _BadBook(f"no {package_path}") from None
    base = posixpath.dirname(package_path)
    items = {
        item.get("id"): item
        for item in package.iterfind(f"{_OPF}manifest/{_OPF}item")
    }
    chapters: list[str] = []
    for ref in package.iterfind(f"{_OPF}spine/{_OPF}itemref"):
        item = items.get(ref.get("idref"))
        if item is None or item.get("media-type") not in _CHAPTER_TYPES or not item.get("href"):
            continue
        chapters.append(posixpath.normpath(posixpath.join(base, unquote(item.get("href", "")))))
    title_element = package.find(f"{_OPF}metadata/{_DC}title")
    title = (title_element.text or "") if title_element is not None else ""
    return title, chapters


def _encrypted(book: zipfile.ZipFile) -> set[str]:
    """Paths META-INF/encryption.xml lists as encrypted (font obfuscation included)."""
    try:
        root = ElementTree.fromstring(book.read("META-INF/encryption.xml"))
    except KeyError:
        return set()
    return {
        posixpath.normpath(unquote(ref.get("URI", "")))
        for ref in root.iter(f"{_XENC}CipherReference")
    }
