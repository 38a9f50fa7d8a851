"""The `iorag` command: a thin shell over Indexer and RagService.

Exit status: 0 success, 1 runtime failure, 2 usage error, 3 quota exhausted
(what was embedded is kept; rerun after the quota refreshes to resume),
130 interrupted.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from indexer.errors import IoragError, QuotaExhaustedError
from indexer.pipeline import Indexer, IndexReport

from .config import Settings
from .indexing import build_indexer

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_QUOTA = 3
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"iorag: error: {message}", err=True)
    sys.exit(code)


def settings_from(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given laid over it."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "settings"
        fail(f"invalid setting {where}: {problem['msg']}", EXIT_USAGE)


class IoragGroup(click.Group):
    """Turns expected failures into one line and an exit status, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QuotaExhaustedError as exc:
            fail(exc.user_message(), EXIT_QUOTA)
        except IoragError as exc:
            fail(exc.user_message())
        except KeyboardInterrupt:
            fail("interrupted; what was embedded is saved and a rerun resumes", EXIT_INTERRUPTED)
        except OSError as exc:
            fail(f"{exc.filename or 'I/O'}: {exc.strerror or exc}")


index_option = click.option(
    "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), help="Index directory [env IORAG_INDEX_DIR, default ./.iorag]."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
collection_option = click.option(
    "--collection", help="Collection (an isolated index under the index root) [env IORAG_COLLECTION, default `default`]."
)


@click.group(cls=IoragGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="iorag")
def cli() -> None:
    """Retrieval-augmented search over IO Intelligence, offline by default.

    With IOINTELLIGENCE_API_KEY set, IO Intelligence models are used;
    without it, a local embedding model and extractive answers.
    """


#: Progress unit per stage of an indexing run (see `indexer.pipeline.StageFn`).
_STAGE_UNITS = {"scanning": "file", "chunking": "char", "embedding": "chunk"}


def _progress_bar(label: str) -> tuple[Any, Any]:
    """A stderr progress bar that follows the stages of an indexing run: (bar, on_stage)."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="file", desc=label, disable=None, file=sys.stderr, dynamic_ncols=True)
    current = [""]

    def on_stage(stage: str, done: int, total: int) -> None:
        if stage != current[0]:
            current[0] = stage
            bar.reset(total=total or None)
            bar.unit = _STAGE_UNITS.get(stage, "item")
            bar.unit_scale = stage == "chunking"
            bar.set_description(f"{label}: {stage}", refresh=False)
        elif total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_postfix_str("", refresh=False)  # a wait for the rate-limit window is over
        bar.refresh()

    return bar, on_stage


def _window_notice(bar: Any) -> Any:
    """Says on the progress line (or, without one, on stderr) that indexing waits for the API's window."""

    def on_wait(seconds: float) -> None:
        text = f"waiting {seconds:.1f} s for the API's rate-limit window"
        if bar.disable:
            click.echo(f"iorag: {text}", err=True)
        else:
            bar.set_postfix_str(text)

    return on_wait


def _report_json(report: IndexReport) -> dict[str, Any]:
    data = dict(vars(report))
    data["problems"] = [{"source": p.source, "reason": p.reason} for p in report.problems]
    data.pop("document_chunks", None)
    return data


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@index_option
@click.option("--embedding-model", help="Embedding model id [env IORAG_EMBEDDING_MODEL].")
@click.option("--chunk-tokens", type=click.IntRange(min=16), help="Chunk size cap in tokens (default: min(model limit, 512)).")
@click.option("--overlap", type=click.IntRange(min=0), help="Tokens shared by neighbouring chunks (default 0).")
@click.option("--dry-run", is_flag=True, help="Count documents, chunks, tokens and requests; send nothing.")
@click.option(
    "--embedding-limit", type=click.IntRange(min=16),
    help="Token limit of the embedding model, for one iorag has no figures for [env IORAG_EMBEDDING_LIMIT].",
)
@click.option(
    "--vector-backend", type=click.Choice(["faiss", "milvus"]),
    help="Where vectors go: faiss (default) or milvus [env IORAG_VECTOR_BACKEND; "
    "URI: IORAG_MILVUS_URI; server credentials: IORAG_MILVUS_TOKEN].",
)
@collection_option
@json_option
def index(
    paths: tuple[str, ...],
    index_dir: Path | None,
    collection: str | None,
    embedding_model: str | None,
    chunk_tokens: int | None,
    overlap: int | None,
    dry_run: bool,
    embedding_limit: int | None,
    vector_backend: str | None,
    as_json: bool,
) -> None:
    """Index files, directories (recursive) or globs: .txt .md .html .jsonl .csv .pdf .docx .pptx .xlsx .epub."""
    settings = settings_from(
        index_dir=index_dir, embedding_model=embedding_model, chunk_tokens=chunk_tokens, chunk_overlap=overlap,
        vector_backend=vector_backend, embedding_limit=embedding_limit, collection=collection,
    )
    bar, on_stage = _progress_bar("indexing")
    indexer = build_indexer(settings, on_stage=on_stage, on_wait=_window_notice(bar), holder="`iorag index`")
    try:
        report = asyncio.run(_index(indexer, list(paths), dry_run))
    finally:
        bar.close()
    for problem in report.problems:
        click.echo(f"iorag: skipped {problem.source}: {problem.reason}", err=True)
    if report.unsupported and as_json:  # the summary line says it otherwise
        kinds = ", ".join(f"{suffix} ({count})" for suffix, count in sorted(report.unsupported.items()))
        click.echo(f"iorag: not read, unsupported file types: {kinds}", err=True)
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2))
    else:
        click.echo(report.summary())
        if dry_run and report.daily_quota_tokens:
            share = report.tokens_to_embed / report.daily_quota_tokens
            click.echo(f"{report.embedding_model}: {share:.1%} of its documented daily quota of {report.daily_quota_tokens:,} tokens")
    if report.documents == 0 and not dry_run:
        fail("nothing was indexed: no readable document under the given paths")


async def _index(indexer: Indexer, paths: list[str], dry_run: bool) -> IndexReport:
    try:
        return await indexer.aindex(paths, dry_run=dry_run)
    finally:
        await indexer.aclose()


@cli.command()
@index_option
@json_option
def compact(index_dir: Path | None, as_json: bool) -> None:
    """Rewrite the index without what writes left behind (deleted rows, small segments)."""
    settings = settings_from(index_dir=index_dir)
    started = time.monotonic()
    manifest = build_indexer(settings).compact()
    if manifest is None:
        fail(f"no index at {settings.index_dir}")
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps({"snapshot": manifest.snapshot, "documents": manifest.documents,
                               "chunks": manifest.chunks, "seconds": round(seconds, 3)}))
    else:
        click.echo(f"compacted: {manifest.documents} documents, {manifest.chunks} chunks in one segment; {seconds:.1f}s")


@cli.command()
@click.argument("query")
@index_option
@click.option("-k", "top_k", type=click.IntRange(1, 1000), help="How many chunks (default 8).")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), help="Search mode (default hybrid).")
@collection_option
@json_option
def search(
    query: str, index_dir: Path | None, top_k: int | None, mode: str | None, collection: str | None, as_json: bool
) -> None:
    """Print the chunks that best match QUERY."""
    from .locations import located_hit_json, source_label
    from .rag import RagService

    settings = settings_from(index_dir=index_dir, top_k=top_k, search_mode=mode, collection=collection)
    with RagService(settings) as service:
        hits = service.search(query)
        empty = not hits and service.health().get("chunks") == 0
    if empty:
        where = settings.index_dir
        fail(f"the index at {where} holds no documents; add some with `iorag index PATH --index {where}`")
    if as_json:
        click.echo(json.dumps({"results": [located_hit_json(h) for h in hits]}, indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("no match")
    for rank, hit in enumerate(hits, start=1):
        header = hit.chunk.header or hit.chunk.doc_id
        click.echo(f"{rank:>2}. [{hit.score:.4f}] {source_label(hit)} :: {header}")
        click.echo("    " + _preview(hit.chunk.text))


def _preview(text: str, width: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@cli.command()
@click.argument("question")
@index_option
@click.option("--model", help="Chat model id, or `extractive` [env IORAG_CHAT_MODEL].")
@click.option("-k", "top_k", type=click.IntRange(1, 1000), help="How many chunks to retrieve (default 8).")
@click.option("--max-completion-tokens", type=click.IntRange(min=1), help="Cap on the answer's tokens.")
@click.option(
    "--context-length", type=click.IntRange(min=256),
    help="Context length of the chat model, for one iorag has no figures for [env IORAG_CONTEXT_LENGTH].",
)
@collection_option
@json_option
def ask(
    question: str,
    index_dir: Path | None,
    collection: str | None,
    model: str | None,
    top_k: int | None,
    max_completion_tokens: int | None,
    context_length: int | None,
    as_json: bool,
) -> None:
    """Answer QUESTION from the index, with numbered sources."""
    from .locations import located_answer_json, source_label
    from .rag import RagService

    settings = settings_from(
        index_dir=index_dir, top_k=top_k, chat_model=model, context_length=context_length, collection=collection
    )
    with RagService(settings) as service:
        answer = service.ask(question, max_completion_tokens=max_completion_tokens)
    if as_json:
        click.echo(json.dumps(located_answer_json(answer), indent=2, ensure_ascii=False))
        return
    click.echo(answer.answer)
    click.echo("")
    # The sources are the cited chunks, numbered as the answer cites them.
    for number, hit in enumerate(answer.sources, start=1):
        click.echo(f"[{number}] {source_label(hit)} :: {hit.chunk.header or hit.chunk.doc_id}")
    budget = f" of {answer.context.budget}" if answer.context.budget is not None else ""
    click.echo(
        f"({answer.model}; {answer.context.chunks} chunks, {answer.context.tokens}{budget} tokens of context, "
        f"{answer.context.dropped} dropped)",
        err=True,
    )


@cli.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--collection", help="Collection for requests without X-Collection [default `default`].")
@click.option(
    "--insecure", is_flag=True, default=None,
    help="Serve a non-loopback address without API keys: anyone who reaches it may read and write [env IORAG_INSECURE].",
)
def serve(index_dir: Path | None, host: str, port: int, collection: str | None, insecure: bool | None) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs); needs keys (`iorag keys add`) to listen beyond loopback."""
    from .api.app import create_app
    from .api.server import is_loopback, run
    from .keys import KeyStore

    settings = settings_from(index_dir=index_dir, collection=collection, insecure=insecure)
    has_keys = KeyStore(settings.keys_path).any()
    if not has_keys and not is_loopback(host) and not settings.insecure:
        fail(
            f"refusing to serve {host} without API keys: add one with `iorag keys add NAME --scope admin`, "
            "or pass --insecure to let anyone who reaches the port read and write",
            EXIT_USAGE,
        )
    access = "API keys required" if has_keys else "no API keys: open to every caller"
    # Bound here, not by uvicorn: a taken port is then one line and exit status 1, not
    # uvicorn's startup-failure status 3 (which iorag uses for "quota exhausted").
    sock = _listen_socket(host, port)
    click.echo(f"iorag: serving {settings.index_dir} on http://{host}:{port} ({access}; docs at /docs)", err=True)
    with sock:
        started = run(create_app(settings), settings, host=host, port=port, sock=sock)
    if not started:
        fail(f"the server on {host}:{port} did not start (see the log above)")


def _listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, or a one-line failure naming the port."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})", EXIT_USAGE)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use; stop the other server or pick another with --port")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return sock


@cli.group()
def keys() -> None:
    """API keys for `iorag serve`: read, write or admin, optionally bound to one collection."""


@keys.command(name="add")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), required=True,
              help="read: search, ask, chat, models, list documents; write: also add, upload, delete; admin: also collections, metrics.")
@click.option("--collection", help="Bind the key to this collection (it gets 403 on any other).")
@index_option
def keys_add(name: str, scope: str, collection: str | None, index_dir: Path | None) -> None:
    """Create key NAME and print its secret (shown this once; only a hash is stored)."""
    from .keys import KeyStore

    settings = settings_from(index_dir=index_dir)
    secret = KeyStore(settings.keys_path).add(name, scope, collection)
    click.echo(secret)
    bound = f" for collection {collection}" if collection else ""
    click.echo(f"iorag: key {name!r} ({scope}{bound}) stored in {settings.keys_path}; the secret above is not kept", err=True)


@keys.command(name="list")
@index_option
@json_option
def keys_list(index_dir: Path | None, as_json: bool) -> None:
    """List keys: name, scope, collection, creation time (never secrets)."""
    import time

    from .keys import KeyStore

    settings = settings_from(index_dir=index_dir)
    listed = KeyStore(settings.keys_path).keys()
    if as_json:
        rows = [{"name": k.name, "scope": k.scope, "collection": k.collection, "created": k.created} for k in listed]
        click.echo(json.dumps({"keys": rows}, indent=2))
        return
    if not listed:
        click.echo("no keys (the server accepts every caller on loopback)")
    for k in listed:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created))
        click.echo(f"{k.name:<24} {k.scope:<6} {k.collection or '*':<20} {created} UTC")


@keys.command(name="revoke")
@click.argument("name")
@index_option
def keys_revoke(name: str, index_dir: Path | None) -> None:
    """Delete key NAME; a running server refuses it from its next request."""
    from .keys import KeyStore

    settings = settings_from(index_dir=index_dir)
    KeyStore(settings.keys_path).revoke(name)
    click.echo(f"iorag: key {name!r} revoked", err=True)


@cli.command()
@json_option
@click.option("--remote/--no-remote", default=None, help="Ask IO Intelligence's /models (default: when a key is set).")
def models(as_json: bool, remote: bool | None) -> None:
    """List models with context length, output cap, embedding limit and where each figure came from."""
    from .model_list import list_models, model_json

    settings = settings_from()
    listed, note = asyncio.run(list_models(settings, remote))
    if note:
        click.echo(f"iorag: {note}", err=True)
    if as_json:
        click.echo(json.dumps({"models": [model_json(m) for m in listed]}, indent=2))
        return
    click.echo(f"{'model':<58} {'kind':<9} {'context':>8} {'output':>7} {'embed':>6} {'dims':>5}  source")
    for m in listed:
        click.echo(
            f"{m.id:<58} {m.kind:<9} {_num(m.context_length):>8} {_num(m.max_output_tokens):>7} "
            f"{_num(m.embedding_limit):>6} {_num(m.dims):>5}  {m.source}"
        )


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


@cli.command(name="eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@index_option
@click.option("-k", "depth", type=click.IntRange(100, 5000), default=300, show_default=True, help="Chunks retrieved per query.")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["hybrid", "dense", "lexical"]), help="Modes to score (default: all three).")
@click.option("--embedding-model", help="Embedding model id.")
@click.option(
    "--answers",
    "answer_sample",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Questions whose answers are scored, where the folder has answers.jsonl (0: all).",
)
@click.option("--model", "answer_model", default="extractive", show_default=True, help="Chat model that answers them.")
@json_option
def evaluate_command(
    dataset_dir: Path,
    index_dir: Path | None,
    depth: int,
    modes: tuple[str, ...],
    embedding_model: str | None,
    answer_sample: int,
    answer_model: str,
    as_json: bool,
) -> None:
    """Score retrieval (and answers) on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv[, answers.jsonl])."""
    from .evaluate import load_dataset, run_evaluation

    dataset = load_dataset(dataset_dir)
    index_dir = index_dir or Path(".iorag-eval") / dataset.name
    settings = settings_from(index_dir=index_dir, embedding_model=embedding_model, reload_interval=0)
    bar, on_stage = _progress_bar(f"indexing {dataset.name}")
    indexer = build_indexer(settings, on_stage=on_stage)
    try:
        summary = asyncio.run(
            run_evaluation(
                settings,
                dataset,
                indexer,
                modes=list(modes) or ["hybrid", "dense", "lexical"],  # type: ignore[arg-type]
                depth=depth,
                answer_sample=answer_sample,
                answer_model=answer_model,
            )
        )
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{dataset.name}: {summary['queries']} queries, {summary['documents']} documents, {summary['chunks']} chunks "
        f"({summary['embedding_model']}); indexed in {summary['index_seconds']:.1f}s"
    )
    click.echo(f"{'mode':<8} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7} {'q/s':>7}")
    for mode, m in summary["modes"].items():
        click.echo(
            f"{mode:<8} {m['ndcg@10']:>8.4f} {m['recall@10']:>7.4f} {m['recall@100']:>7.4f} "
            f"{m['mrr@10']:>7.4f} {m['queries_per_second']:>7.1f}"
        )
    if "answers" in summary:
        a = summary["answers"]
        click.echo(
            f"answers ({answer_model}, {a['questions']} questions): contains {a['contains']:.1%}, "
            f"first sentence {a['first_sentence']:.1%}, top source {a['top_source']:.1%}, "
            f"chars p50 {a['chars_p50']} p90 {a['chars_p90']}"
        )


def main() -> None:
    cli(prog_name="iorag")


if __name__ == "__main__":
    main()
