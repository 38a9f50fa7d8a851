"""The issue's folder, as a user runs it: every format indexed but the `.bin`, which is named; page 7 cited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer import IndexReport

from ..documents import PAGE_7_FACT, PAGE_7_QUESTION, write_mixed_folder
from .test_cli import iorag


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("formats")
    write_mixed_folder(work / "team")
    return work


def test_index_reads_every_format_and_names_the_unsupported_file(team: Path) -> None:
    result = iorag("index", "team", "--json", cwd=team)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["documents"] == 7 and report["problems"] == []
    assert report["unsupported"] == {".bin": 1}
    assert "unsupported file types: .bin (1)" in result.stderr


def test_the_summary_line_names_unsupported_types() -> None:
    report = IndexReport(embedding_model="m", unsupported={".bin": 1, ".exe": 2})
    assert report.summary().endswith("; 3 files of unsupported types not read (1 .bin, 2 .exe)")


def test_answer_on_page_7_cites_page_7(team: Path) -> None:
    result = iorag("ask", PAGE_7_QUESTION, "-k", "4", cwd=team)
    assert result.returncode == 0, result.stderr
    assert PAGE_7_FACT in result.stdout
    assert "[1] team/report.pdf p. 7 ::" in result.stdout
    answer = json.loads(iorag("ask", PAGE_7_QUESTION, "-k", "4", "--json", cwd=team).stdout)
    cited = [answer["sources"][n - 1] for n in answer["cited"]]
    assert cited and cited[0]["doc_id"] == "team/report.pdf" and cited[0]["location"] == {"page": 7}


def test_search_shows_sheet_and_rows(team: Path) -> None:
    result = iorag("search", "Atlantis Captain Nemo revenue", "-k", "3", "--json", cwd=team)
    hits = json.loads(result.stdout)["results"]
    sheet_hits = [h for h in hits if h["doc_id"] == "team/figures.xlsx"]
    assert sheet_hits and sheet_hits[0]["location"]["sheet"] == "Q3"
    text = iorag("search", "Atlantis Captain Nemo revenue", "-k", "3", cwd=team).stdout
    assert "team/figures.xlsx sheet Q3 rows" in text
