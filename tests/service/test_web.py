"""The web page in a real browser: Debian's Chromium driven by Playwright, the app on real uvicorn.

Chromium comes from the system (`.ci/run` installs the `chromium` package);
Playwright's own browser download is never used. Every request the browser
makes is checked: one to any host but the loopback server fails the test.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from indexer.pipeline import Indexer
from service.api import create_app
from service.config import Settings

from ..conftest import ROOT
from ..documents import PAGE_7_QUESTION, pdf_bytes
from ..serving import serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Screenshots land here (gitignored), for a person to look at.
ARTIFACTS = ROOT / "tests" / "artifacts"
QUESTION = "How does hybrid search merge dense and lexical rankings?"
FOLLOW_UP = "What constant does it use?"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web") / "index"
    Indexer(path).index([ROOT / "corpora"])
    return path


@pytest.fixture(scope="module")
def base_url(index_dir: Path) -> Iterator[str]:
    with serve(create_app(Settings(index_dir=index_dir, reload_interval=0))) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Offsite:
    """Aborts and records every request to a host other than the loopback server."""

    def __init__(self, base_url: str) -> None:
        self.allowed = urlsplit(base_url).netloc
        self.blocked: list[str] = []

    def __call__(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or (parts.scheme in ("http", "https") and parts.netloc == self.allowed):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


@pytest.fixture
def page(base_url: str, browser: Browser) -> Iterator[tuple[Page, Offsite]]:
    # The server (and its index) first: Playwright's sync API holds an event loop on this thread.
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    offsite = Offsite(base_url)
    context.route("**/*", offsite)
    tab = context.new_page()
    yield tab, offsite
    context.close()
    assert offsite.blocked == [], f"requests left the machine: {offsite.blocked}"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def ask(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.click("#ask")


def test_the_page_streams_an_answer_with_its_sources_and_follows_up(page: tuple[Page, Offsite]) -> None:
    tab, _ = page
    tab.goto("/")
    expect(tab.locator("#status")).to_contain_text("documents")
    # Count how often the answer's text changes while it streams in.
    tab.evaluate(
        """() => {
            window.answerUpdates = 0;
            new MutationObserver(() => { window.answerUpdates += 1; })
                .observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true});
        }"""
    )
    ask(tab, QUESTION)
    answer = tab.locator(".turn.assistant .text").last
    expect(answer.locator(".cite").first).to_be_visible()
    assert tab.evaluate("window.answerUpdates") >= 5, "the answer did not arrive in pieces"
    expect(answer).to_contain_text("reciprocal rank fusion")
    sources = tab.locator("#sources li")
    assert sources.count() >= 1
    first_cited = tab.locator("#sources li.cited").first
    expect(first_cited.locator(".title")).to_have_text("How iorag chunks and retrieves")
    expect(first_cited.locator(".where")).to_contain_text("chunking-and-retrieval.md")

    # A follow-up uses the conversation: it searches for more than its own words.
    ask(tab, FOLLOW_UP)
    expect(tab.locator(".turn.assistant").nth(1).locator(".meta")).to_contain_text("searched for: " + FOLLOW_UP)
    expect(tab.locator(".turn.assistant .text").last).to_contain_text("60")
    expect(tab.locator("#sources li.cited .title").first).to_have_text("How iorag chunks and retrieves")
    screenshot(tab, "web-page.png")


def test_api_errors_are_shown_readably(page: tuple[Page, Offsite]) -> None:
    tab, _ = page
    tab.goto("/")
    ask(tab, "x" * 20_001)  # over the longest question the API accepts
    expect(tab.locator("#error")).to_be_visible()
    expect(tab.locator("#error-title")).to_have_text("422 ValidationError:")
    expect(tab.locator("#error-message")).to_contain_text("question")
    assert tab.locator(".turn.assistant").count() == 0


def test_the_key_is_sent_as_bearer_and_kept_for_the_session(page: tuple[Page, Offsite]) -> None:
    tab, _ = page
    tab.goto("/")
    tab.fill("#api-key", "k-123")
    tab.fill("#collection-input", "team-a")
    with tab.expect_request("**/v1/health") as sent:
        tab.click("#settings button[type=submit]")
    headers = sent.value.headers
    assert headers["authorization"] == "Bearer k-123" and headers["x-collection"] == "team-a"
    tab.reload()
    assert tab.evaluate("sessionStorage.getItem('iorag.key')") == "k-123"
    expect(tab.locator("#api-key")).to_have_value("k-123")


def test_the_page_and_the_docs_load_with_no_external_request(page: tuple[Page, Offsite]) -> None:
    tab, offsite = page
    tab.goto("/")
    expect(tab.locator("h1")).to_have_text("iorag")
    tab.wait_for_load_state("networkidle")
    tab.goto("/docs")
    # Swagger UI rendered the schema's operations from the local bundle.
    expect(tab.locator(".opblock").first).to_be_visible(timeout=20_000)
    expect(tab.get_by_text("/v1/chat/completions", exact=True)).to_be_visible()
    tab.wait_for_load_state("networkidle")
    screenshot(tab, "docs.png")
    assert offsite.blocked == []


def test_the_page_ships_in_the_package() -> None:
    from service.api.web import DOCS_ASSETS, STATIC

    assert {"index.html", "app.js", "style.css", "favicon.svg"} <= {p.name for p in STATIC.iterdir()}
    assert (DOCS_ASSETS / "swagger-ui-bundle.js").stat().st_size > 100_000
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"service.api" = ["static/*"]' in pyproject
    text = "".join((STATIC / name).read_text() for name in ("index.html", "app.js", "style.css"))
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert shutil.which("chromium") or Path(CHROMIUM).exists()


@pytest.fixture
def own_server(index_dir: Path, tmp_path: Path) -> Iterator[str]:
    """A server over its own copy of the index: this test deletes and uploads documents.

    A copy, because indexing anew would need an event loop of its own, and
    Playwright's sync API already holds one on this thread.
    """
    own = tmp_path / "index"
    shutil.copytree(index_dir, own)
    with serve(create_app(Settings(index_dir=own, reload_interval=0))) as url:
        yield url


def test_the_page_lists_deletes_and_uploads_documents(own_server: str, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(base_url=own_server, viewport={"width": 1280, "height": 900})
    offsite = Offsite(own_server)
    context.route("**/*", offsite)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # the "Delete ...?" confirmation
    try:
        tab.goto("/")
        rows = tab.locator("#doc-rows tr")
        expect(rows).to_have_count(5)
        expect(tab.locator("#doc-total")).to_have_text("(5)")
        faq = rows.filter(has_text="faq.txt")
        expect(faq).to_have_count(1)
        faq.get_by_role("button", name="Delete").click()
        expect(rows).to_have_count(4)
        expect(rows.filter(has_text="faq.txt")).to_have_count(0)
        expect(tab.locator("#status")).to_contain_text("4 documents")

        note = tmp_path / "zebras.md"
        note.write_text("# Zebras\n\nZebras have black and white stripes, unique to each animal.\n", encoding="utf-8")
        handbook = tmp_path / "handbook.pdf"
        handbook.write_bytes(pdf_bytes())
        tab.set_input_files("#files", [str(note), str(handbook)])
        tab.click("#upload")
        expect(tab.locator("#upload-result")).to_contain_text("2 added")
        expect(rows).to_have_count(6)
        expect(rows.filter(has_text="zebras.md")).to_have_count(1)
        expect(rows.filter(has_text="handbook.pdf")).to_have_count(1)

        # The uploaded documents answer questions at once, and a PDF passage says its page.
        ask(tab, "What do zebras have?")
        expect(tab.locator("#sources li.cited .title").first).to_have_text("Zebras")
        ask(tab, PAGE_7_QUESTION)
        cited = tab.locator("#sources li.cited").first
        expect(cited.locator(".where")).to_contain_text("handbook.pdf")
        expect(cited.locator(".where")).to_contain_text("page 7")
        screenshot(tab, "web-documents.png")
    finally:
        context.close()
    assert offsite.blocked == []
