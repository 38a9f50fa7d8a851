"""Tests for indexer.sources: files, directories, globs, JSONL, HTML, problems and scope."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from indexer.errors import SourceError
from indexer.models import Document
from indexer.sources import (
    ScanResult,
    SourceProblem,
    documents_from_records,
    html_to_markdown,
    in_scope,
    iter_documents,
    scan,
)

HTML_PAGE = """<!doctype html>
<html><head><title> The  Page </title><style>p { color: red }</style></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Main heading</h1>
<p>First paragraph,
   wrapped over lines.</p>
<script>var hidden = "script text";</script>
<h2>Details</h2>
<ul><li>one</li><li>two</li></ul>
<table><tr><td>cell a</td><td>cell b</td></tr></table>
<pre>def f():
    # a comment, not a heading
    return 1</pre>
<!-- a comment -->
</body></html>
"""


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A small corpus with every supported type, nesting, hidden entries and noise."""
    root = tmp_path / "docs"
    write(root / "a.txt", "Plain text file.\n")
    write(root / "b.md", "# Bee Title\n\nSome *markdown*.\n")
    write(root / "c.html", HTML_PAGE)
    write(root / "sub" / "d.markdown", "No heading here.\n")
    write(root / "sub" / "deeper" / "e.htm", "<h1>Only H1</h1><p>Body.</p>")
    write(
        root / "corpus.jsonl",
        jsonl({"_id": "j1", "title": "J one", "text": "First."}, {"_id": 2, "text": "Second."}),
    )
    write(root / ".hidden" / "secret.md", "# Hidden\n")
    write(root / ".dotfile.txt", "hidden file\n")
    write(root / "data.bin", b"\x00\x01 binary")
    write(root / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    return root


def ids(result: ScanResult) -> list[str]:
    return [d.id for d in result.documents]


# -- walking ----------------------------------------------------------------------------


def test_directory_scan_reads_supported_files_in_order(tree: Path) -> None:
    result = scan([tree], base=tree.parent)
    assert result.problems == []
    assert ids(result) == [
        "docs/a.txt",
        "docs/b.md",
        "docs/c.html",
        "j1",
        "2",
        "docs/sub/d.markdown",
        "docs/sub/deeper/e.htm",
    ]
    assert [p.name for p in result.files] == [
        "a.txt",
        "b.md",
        "c.html",
        "corpus.jsonl",
        "d.markdown",
        "e.htm",
    ]
    by_id = {d.id: d for d in result.documents}
    assert by_id["docs/a.txt"].source == str(tree / "a.txt")
    assert by_id["j1"].source == str(tree / "corpus.jsonl")


def test_titles(tree: Path) -> None:
    by_id = {d.id: d for d in scan([tree], base=tree).documents}
    assert by_id["a.txt"].title == "a"
    assert by_id["b.md"].title == "Bee Title"
    assert by_id["sub/d.markdown"].title == "d"
    assert by_id["c.html"].title == "The Page"
    assert by_id["sub/deeper/e.htm"].title == "Only H1"
    assert by_id["j1"].title == "J one"
    assert by_id["2"].title == ""


def test_scan_is_deterministic_and_streaming_agrees(tree: Path) -> None:
    first, second = scan([tree]), scan([tree])
    assert first == second
    streamed = list(iter_documents([tree]))
    assert [d for d in streamed if isinstance(d, Document)] == first.documents
    assert [p for p in streamed if isinstance(p, SourceProblem)] == first.problems


def test_ids_default_to_the_current_directory(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    assert "sub/d.markdown" in ids(scan(["sub"]))
    # Outside the base, the id is the absolute path.
    outside = write(tmp_path / "elsewhere" / "x.txt", "Far away.")
    assert ids(scan([outside])) == [outside.as_posix()]


def test_globs(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    assert ids(scan(["docs/**/*.m*"])) == ["docs/b.md", "docs/sub/d.markdown"]
    assert ids(scan(["docs/*.txt"])) == ["docs/a.txt"]  # .dotfile.txt is hidden
    assert ids(scan(["docs/s*"])) == [
        "docs/sub/d.markdown",
        "docs/sub/deeper/e.htm",
    ]  # a matched directory is walked
    result = scan(["docs/*.rst"])
    assert result.documents == [] and result.problems == [
        SourceProblem("docs/*.rst", "no files match this pattern")
    ]


def test_paths_given_twice_are_read_once(tree: Path) -> None:
    result = scan([tree / "a.txt", tree, str(tree / "*.txt")], base=tree)
    assert ids(result).count("a.txt") == 1
    assert result.problems == []


def test_missing_path_is_a_problem_and_the_rest_goes_on(tree: Path) -> None:
    result = scan([tree / "nope.md", tree / "a.txt"], base=tree)
    assert result.problems == [SourceProblem(str(tree / "nope.md"), "no such file or directory")]
    assert ids(result) == ["a.txt"]


def test_explicit_files(tree: Path) -> None:
    result = scan([tree / "data.bin", tree / ".dotfile.txt"], base=tree)
    assert [p.reason for p in result.problems] == [
        "unsupported file type '.bin' (supported: .txt .md .markdown .html .htm .jsonl .csv .tsv .pdf .docx .pptx"
        " .xlsx .epub)"
    ]
    # Named explicitly, a hidden file is read.
    assert ids(result) == [".dotfile.txt"]


def test_a_directory_named_like_a_file_is_walked(tmp_path: Path) -> None:
    write(tmp_path / "notes.md" / "inner.txt", "Inside.")
    result = scan([tmp_path], base=tmp_path)
    assert ids(result) == ["notes.md/inner.txt"]
    assert result.problems == []


# -- bad files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("bom-bad.md", b"\xef\xbb\xbfab\xc3", "not valid UTF-8 (byte offset 5)"),
        ("binary.txt", b"text\x00\x01\x02 more", "binary file"),
        ("empty.md", b"", "empty document"),
        ("blank.txt", b"  \n\t\r\n  ", "empty document"),
        ("script-only.html", b"<html><script>x()</script><nav>menu</nav></html>", "empty document"),
        ("empty.jsonl", b"\n\n", "empty document"),
    ],
)
def test_bad_files_are_problems(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = write(tmp_path / name, content)
    write(tmp_path / "good.txt", "Fine.")
    result = scan([tmp_path], base=tmp_path)
    assert result.problems == [SourceProblem(str(path), reason)]
    assert ids(result) == ["good.txt"]


def test_bom_and_newlines_are_normalized(tmp_path: Path) -> None:
    write(tmp_path / "win.md", b"\xef\xbb\xbf# Windows\r\n\r\nLine one\r\nLine two\rold mac\r\n")
    [doc] = scan([tmp_path]).documents
    assert doc.text == "# Windows\n\nLine one\nLine two\nold mac\n"
    assert doc.title == "Windows"


def test_broken_symlink_is_a_problem_with_the_os_reason(tmp_path: Path) -> None:
    # Fails for root too, unlike a permission test.
    os.symlink(tmp_path / "missing-target.md", tmp_path / "dangling.md")
    write(tmp_path / "ok.md", "Fine.")
    result = scan([tmp_path], base=tmp_path)
    assert result.problems == [SourceProblem(str(tmp_path / "dangling.md"), "No such file or directory")]
    assert ids(result) == ["ok.md"]


# -- JSONL -----------------------------------------------------------------------------


def test_jsonl_bad_lines_are_problems_and_good_lines_survive(tmp_path: Path) -> None:
    lines = jsonl(
        {"_id": "a", "text": "Alpha.", "metadata": {"lang": "en"}},
        "{not json",
        {"_id": "b"},
        {"_id": "c", "text": 42},
        {"_id": "d", "text": "   "},
        {"_id": "a", "text": "Alpha again."},
        ["a", "list"],
        {"text": "no id"},
        {"_id": True, "text": "boolean id"},
        {"_id": "e", "text": "Title is odd.", "title": 7},
        {"_id": "f", "text": "Bad metadata.", "metadata": [1]},
        {"id": "g", "text": "Plain id key.", "title": "  Gee  "},
        '{"_id": "h", "text": "lone \\ud800 surrogate"}',
    )
    path = write(
        tmp_path / "corpus.jsonl",
        lines.encode() + b'{"_id": "i", "text": "\xff"}\n' + b'{"_id": 9, "text": "Nine."}',
    )
    result = scan([path])
    assert [(d.id, d.text, d.title) for d in result.documents] == [
        ("a", "Alpha.", ""),
        ("g", "Plain id key.", "Gee"),
        ("9", "Nine.", ""),
    ]
    assert result.documents[0].metadata == {"lang": "en", "line": 1}
    assert result.documents[2].metadata == {"line": 15}
    assert all(d.source == str(path) for d in result.documents)
    reasons = {int(p.source.rsplit(":", 1)[1]): p.reason for p in result.problems}
    assert all(p.source.startswith(f"{path}:") for p in result.problems)
    assert reasons == {
        2: "invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        3: "missing text",
        4: "text must be a string, got int",
        5: "empty document",
        6: "duplicate id 'a' (first on line 1)",
        7: "expected a JSON object, got list",
        8: 'missing id ("_id" or "id")',
        9: "id must be a string or an integer, got bool",
        10: "title must be a string, got int",
        11: "metadata must be an object, got list",
        13: "text contains an unpaired surrogate",
        14: f"not valid UTF-8 (byte offset {len(lines.encode()) + 22})",
    }


def test_duplicate_ids_across_files_keep_the_first(tmp_path: Path) -> None:
    write(tmp_path / "one.jsonl", jsonl({"_id": "same", "text": "First copy."}))
    write(tmp_path / "two.jsonl", jsonl({"_id": "same", "text": "Second copy."}))
    result = scan([tmp_path])
    assert [d.text for d in result.documents] == ["First copy."]
    assert len(result.problems) == 1 and "duplicate document id 'same'" in result.problems[0].reason
    assert [x for x in iter_documents([tmp_path]) if isinstance(x, SourceProblem)] == result.problems


def test_documents_from_records() -> None:
    docs = documents_from_records(
        [{"id": "x", "text": "Ex.", "title": "T", "metadata": {"k": 1}}, {"_id": 3, "text": "Three."}]
    )
    assert docs == [
        Document(id="x", text="Ex.", title="T", metadata={"k": 1}, source="api"),
        Document(id="3", text="Three.", source="api"),
    ]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"id": "x", "text": ""}], "record 0 (id 'x'): empty document"),
        ([{"id": "x", "text": "a"}, {"text": "b"}], 'record 1: missing id ("_id" or "id")'),
        (
            [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}],
            "record 1: duplicate id 'x' (first in record 0)",
        ),
        (["not a mapping"], "record 0: expected a JSON object, got str"),
    ],
)
def test_bad_records_raise_naming_the_record(records: list[object], message: str) -> None:
    with pytest.raises(SourceError) as caught:
        documents_from_records(records)  # type: ignore[arg-type]
    assert str(caught.value) == message


# -- HTML -------------------------------------------------------------------------------


def test_html_becomes_markdown() -> None:
    title, text = html_to_markdown(HTML_PAGE)
    assert title == "The Page"
    assert text.split("\n\n") == [
        "# Main heading",
        "First paragraph, wrapped over lines.",
        "## Details",
        "- one",
        "- two",
        "cell a",
        "cell b",
        "```\ndef f():\n    # a comment, not a heading\n    return 1\n```",
    ]
    for dropped in ("Home", "script text", "color", "a comment -->"):
        assert dropped not in text


def test_html_text_that_looks_like_a_heading_is_escaped() -> None:
    _, text = html_to_markdown("<p># not a heading</p><p>a<br>b</p>")
    assert text == "\\# not a heading\n\na\nb"


# -- scope -------------------------------------------------------------------------------


def test_in_scope_cases(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    a = str(tree / "a.txt")
    nested = str(tree / "sub" / "deeper" / "e.htm")
    assert in_scope(a, ["docs"])
    assert in_scope(a, [tree / "a.txt"])
    assert in_scope(nested, [tree])
    assert not in_scope(a, [tree / "sub"])
    assert not in_scope(str(tree / ".hidden" / "secret.md"), [tree])
    assert not in_scope(str(tree / "data.bin"), [tree])
    assert not in_scope(str(tree.parent / "docs2" / "a.txt"), [tree])  # a sibling sharing the prefix
    assert in_scope(nested, ["docs/**/*.htm"])
    assert in_scope(nested, ["docs/s*"])
    assert not in_scope(a, ["docs/**/*.md"])
    # Files that are gone are still in scope: that is how deletions are found.
    assert in_scope(str(tree / "gone.md"), [tree])
    assert in_scope(str(tree / "gone.md"), ["docs/*.md"])
    assert in_scope(str(tree / "gone.md"), [tree / "gone.md"])


@pytest.mark.parametrize(
    "spec",
    [
        ["docs"],
        ["docs/sub"],
        ["docs/*.md"],
        ["docs/**"],
        ["docs/**/*.htm"],
        ["docs/**/*.m*"],
        ["docs/s*"],
        ["docs/?.txt"],
        ["docs/[ab].*"],
        ["*"],
        ["docs/.hidden/*"],
        ["docs/.*"],
        ["docs/[!a]*"],
    ],
)
def test_in_scope_agrees_with_what_scan_reads(
    tree: Path, monkeypatch: pytest.MonkeyPatch, spec: list[str]
) -> None:
    monkeypatch.chdir(tree.parent)
    read = {str(p.absolute()) for p in scan(spec).files}
    every_file = {str(p) for p in tree.parent.rglob("*") if p.is_file()}
    assert {f for f in every_file if in_scope(f, spec)} == read
