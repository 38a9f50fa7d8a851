"""HTML pages to the markdown-ish text the chunker understands: headings, paragraphs, code fences."""

from __future__ import annotations

import re
import warnings
from typing import Any

_WHITESPACE = re.compile(r"\s+")
#: Elements dropped with everything inside them.
_DROPPED_TAGS = frozenset(
    {"script", "style", "nav", "noscript", "template", "head", "title", "svg", "iframe", "object"}
)
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr",
        "html", "li", "main", "ol", "p", "section", "summary", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}


def html_to_markdown(html: str) -> tuple[str, str]:
    """Turn HTML into markdown-ish text the chunker understands.

    Headings become `#` headings, block elements (p, li, td, ...) become
    paragraphs separated by blank lines, `pre` becomes a fenced block, and
    script, style and nav are dropped.

    Args:
        html: The page.

    Returns:
        (title, text): the `<title>` or else the first `<h1>` (may be empty), and the text.
    """
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
    from bs4.element import CData, NavigableString

    with warnings.catch_warnings():
        # A page whose whole text looks like a file name or XML is still a page.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "html.parser")

    blocks: list[str] = []
    inline: list[str] = []
    # "- " waiting for the first text of a list item, which may sit in a nested block.
    bullet = [""]

    def flush() -> None:
        lines = (" ".join(part.split()) for part in "".join(inline).split("\n"))
        # A paragraph starting with "#" must not read as a heading.
        text = "\n".join("\\" + line if line.startswith("#") else line for line in lines if line)
        if text:
            blocks.append(bullet[0] + text)
            bullet[0] = ""
        inline.clear()

    def walk(node: Any) -> None:
        for child in node.children:
            if type(child) is NavigableString or isinstance(child, CData):
                inline.append(_WHITESPACE.sub(" ", str(child)))
            elif isinstance(child, NavigableString) or child.name in _DROPPED_TAGS:
                continue  # comments, doctypes, processing instructions; dropped elements
            elif child.name in _HEADING_TAGS:
                flush()
                heading = " ".join(child.get_text(" ").split())
                if heading:
                    blocks.append("#" * _HEADING_TAGS[child.name] + " " + heading)
            elif child.name == "pre":
                flush()
                code = child.get_text().strip("\n")
                if code.strip():
                    # A fence longer than any backtick run inside keeps the block closed.
                    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
                    fence = "`" * max(3, longest + 1)
                    blocks.append(f"{fence}\n{code}\n{fence}")
            elif child.name == "br":
                inline.append("\n")
            elif child.name in _BLOCK_TAGS:
                flush()
                if child.name == "li":
                    bullet[0] = "- "
                walk(child)
                flush()
                bullet[0] = ""
            else:
                walk(child)

    walk(soup)
    flush()
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    if not title:
        h1 = soup.find("h1")
        title = " ".join(h1.get_text(" ").split()) if h1 else ""
    return title, "\n\n".join(blocks)
