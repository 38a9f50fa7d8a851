"""`POST /v1/search` under load, over HTTP on loopback, with and without a stream of writes.

    .venv/bin/python bench/http_load.py [--chunks 100000] [--duration 20] [--rounds 3] [--json out.json]
    .venv/bin/python bench/http_load.py --chunks 5000 --duration 5 --rounds 1    # a quick smoke run
    IORAG_BENCH_SOURCE=/path/to/other/checkout .venv/bin/python bench/http_load.py --rounds 0   # serve another iorag

Needs `wrk` (Debian: `apt-get install -y wrk`). What it does:

    index   a synthetic index of about --chunks chunks, built as bench/scale.py builds
            its own (its documents and its near-free GaussEmbedder), then compacted;
            kept under --dir and reused by later runs (--rebuild builds it again)
    serve   a copy of that index served by a real uvicorn server over loopback, in a
            child process, through iorag's own app factory and server config (the
            same code as `iorag serve`), its RagService given the GaussEmbedder so
            queries are embedded with the model the index was built with
    search  wrk against POST /v1/search with a small set of repeated queries (32), per mode
            (hybrid, the default, and dense): requests/s and latency percentiles; then the
            first mode with queries that never repeat, which no cache answers
    writes  --rounds rounds of the first mode's repeated queries without writes, then
            while a client posts one small document at a time to POST /v1/documents,
            continuously: search p99 with and without the writes (medians over the
            rounds, alternated so the machine's other load falls on both alike),
            and the writes/s achieved

The server runs with iorag's defaults: no keys (so loopback only), hence no rate
limit (a keyless loopback server has none), and IORAG_MAX_CONCURRENCY 64, above
--connections, so neither throttles; any non-2xx answer is counted and reported.
Besides wrk's figures, each run reports the server's CPU time per request (from
/proc), which other load on the machine changes much less than latency, and the
share of a core the server got.
`--server-pid-file` writes the server's pid for a profiler (`py-spy record -p PID`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import scale  # noqa: E402  (bench/scale.py: the documents and the embedder of the scale benchmark)

#: Documents per build batch, as in bench/scale.py.
BATCH_DOCS = scale.BATCH_DOCS
#: Distinct queries the load cycles through: repeated, as a busy search box sees them.
QUERIES = 32
#: Queries in the distinct-query run: more than any cache keeps, and than a run sends.
DISTINCT = 50_000
WRK_MISSING = "wrk is not installed: run `apt-get install -y wrk` (Debian) and rerun"

#: wrk script: cycles through the bodies in BODIES_FILE, prints a JSON summary at the end.
WRK_SCRIPT = r"""
local bodies = {}
for line in io.lines(os.getenv("BODIES_FILE")) do bodies[#bodies + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/search", {["Content-Type"] = "application/json"}, bodies[(n % #bodies) + 1])
end
done = function(summary, latency, requests)
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do p[#p + 1] = string.format('"%s": %.3f', q, latency:percentile(q) / 1000) end
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "non_2xx": %d, "socket_errors": %d, "timeouts": %d, ' ..
    '"mean_ms": %.3f, "max_ms": %.3f, "percentiles_ms": {%s}}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout,
    latency.mean / 1000, latency.max / 1000, table.concat(p, ", ")))
end
"""


# -- the index ------------------------------------------------------------------


def build_index(index_dir: Path, chunks: int) -> dict[str, Any]:
    """Add scale.py's documents in batches until the index holds at least `chunks` chunks."""
    from indexer import Indexer

    indexer = Indexer(index_dir, embedder=scale.GaussEmbedder())
    started = time.perf_counter()
    done = total = 0
    while total < chunks:
        # Documents make about two chunks each: aim for what is missing, in batches.
        want = max(1, min(BATCH_DOCS, math.ceil((chunks - total) / 2)))
        report = indexer.add_documents(scale._documents(done, done + want))
        done += want
        total = report.chunks
    return {"documents": done, "chunks": total, "build_s": round(time.perf_counter() - started, 1)}


def compact_index(index_dir: Path) -> dict[str, Any]:
    """Merge what the bulk build left (a segment per batch) into one, as after any bulk load, so
    that the writes measured pay for themselves, not for merging the build's segments."""
    from indexer import Indexer

    started = time.perf_counter()
    Indexer(index_dir, embedder=scale.GaussEmbedder()).compact()
    return {"compact_s": round(time.perf_counter() - started, 1)}


def ensure_index(root: Path, chunks: int, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    base = root / f"base-{chunks}"
    info_file = base / "bench.json"
    if info_file.exists() and not rebuild:
        from indexer.store.snapshot import FORMAT

        built = json.loads((base / "CURRENT").read_text()).get("format")
        if built != FORMAT:
            print(f"{base} has index format {built}, this iorag writes {FORMAT}: building it again",
                  file=sys.stderr, flush=True)
            rebuild = True
    if rebuild or not info_file.exists():
        shutil.rmtree(base, ignore_errors=True)
        print(f"building an index of {chunks:,} chunks in {base} ...", file=sys.stderr, flush=True)
        info_file.write_text(json.dumps(build_index(base, chunks)))
    info = json.loads(info_file.read_text())
    if "compact_s" not in info:
        info.update(compact_index(base))
        info_file.write_text(json.dumps(info))
    return base, info


# -- the server (child process) -------------------------------------------------


def serve(index_dir: Path) -> None:
    """Run iorag's app under uvicorn on a free loopback port; print the port once bound."""
    from service import RagService, Settings
    from service.api.app import create_app
    from service.api.server import run

    settings = Settings(index_dir=index_dir)
    app = create_app(settings, service=RagService(settings, embedder=scale.GaussEmbedder()))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    with sock:
        run(app, settings, host="127.0.0.1", port=port, sock=sock)


class Server:
    """The child process serving a copy of the index."""

    def __init__(self, index_dir: Path, log_path: Path) -> None:
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(index_dir)],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise SystemExit(f"the server did not start; its log: {log_path}")
        self.port = int(json.loads(line)["port"])
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # The first search opens the snapshot; do it before measuring.
                answer = httpx.post(f"{self.url}/v1/search", json={"query": "warm up"}, timeout=60)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if answer.status_code != 200:
                raise SystemExit(
                    f"the server cannot search the index ({answer.status_code}: {answer.text[:300]}); "
                    "if iorag's index layout changed since it was built, rerun with --rebuild"
                )
            return
        raise SystemExit("the server did not answer in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# -- load -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (Linux), None where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, bodies: Path, script: Path, duration: float, connections: int, threads: int, server_pid: int
) -> dict[str, Any]:
    """One wrk run; besides wrk's figures, the server's CPU time per request (what contention does not change)."""
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s", "--timeout", "10s",
         "-s", str(script), url],
        capture_output=True, text=True, check=False, env={**os.environ, "BODIES_FILE": str(bodies)},
    )
    if out.returncode != 0:
        raise SystemExit(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    cpu_after = cpu_seconds(server_pid)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    summary["requests_per_s"] = round(summary["requests"] / summary["duration_s"], 1)
    if cpu_before is not None and cpu_after is not None and summary["requests"]:
        used = cpu_after - cpu_before
        summary["server_cpu_ms_per_request"] = round(1000 * used / summary["requests"], 3)
        # How much of a core the server got: below 1, it was waiting on the CPU (or on wrk).
        summary["server_cores_used"] = round(used / summary["duration_s"], 2)
    return summary


#: Numbers the documents the writers post, across rounds.
_WRITTEN = itertools.count(1)


class Writer(threading.Thread):
    """Posts one small new document at a time, as fast as the server takes them."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.started_at = self.stopped_at = 0.0

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=60) as client:
            self.started_at = time.perf_counter()
            while not self.stopping.is_set():
                # New in every round too: a document posted again unchanged publishes nothing.
                n = next(_WRITTEN)
                doc = {"id": f"load-{n:06d}", "title": f"Load {n}",
                       "text": scale.document_text(10_000_000 + n)[:600]}
                t = time.perf_counter()
                response = client.post("/v1/documents", json={"documents": [doc]})
                self.latencies.append(time.perf_counter() - t)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
            self.stopped_at = time.perf_counter()

    def summary(self) -> dict[str, Any]:
        took = sorted(self.latencies)
        elapsed = self.stopped_at - self.started_at
        return {
            "writes": len(took), "writes_per_s": round(len(took) / elapsed, 2) if elapsed else 0.0,
            "write_p50_ms": round(1000 * statistics.median(took), 1) if took else None,
            "write_max_ms": round(1000 * took[-1], 1) if took else None,
            "failed": len(self.failures), "first_failure": self.failures[0] if self.failures else None,
        }


def queries_file(folder: Path, mode: str, count: int = QUERIES) -> Path:
    path = folder / f"bodies-{mode}-{count}.jsonl"
    path.write_text("".join(json.dumps({"query": q, "mode": mode}) + "\n" for q in scale._queries(count)))
    return path


def writes_rounds(load: Callable[..., dict[str, Any]], bodies: Path, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of the repeated queries without writes, then with a client writing one document at a
    time; alternated, so that a change in the machine's other load falls on both sides alike."""
    rounds = []
    for n in range(args.rounds):
        quiet = load(bodies, duration=args.duration)
        writer = Writer(url)
        writer.start()
        time.sleep(1.0)
        loaded = load(bodies, duration=args.duration)
        writer.stopping.set()
        writer.join()
        loaded.update(writer.summary())
        row = {"without": quiet, "with": loaded,
               "p99_ratio": round(loaded["percentiles_ms"]["99"] / quiet["percentiles_ms"]["99"], 2)}
        rounds.append(row)
        print(f"round {n + 1}: {json.dumps(row)}", file=sys.stderr, flush=True)
    writes = sum(r["with"]["writes"] for r in rounds)
    return {
        "rounds": rounds,
        "p99_without_ms": round(statistics.median(r["without"]["percentiles_ms"]["99"] for r in rounds), 1),
        "p99_with_ms": round(statistics.median(r["with"]["percentiles_ms"]["99"] for r in rounds), 1),
        "p99_ratio_median": round(statistics.median(r["p99_ratio"] for r in rounds), 2),
        "requests_per_s_with": statistics.median(r["with"]["requests_per_s"] for r in rounds),
        "writes": writes,
        "writes_per_s": round(statistics.median(r["with"]["writes_per_s"] for r in rounds), 2),
        "write_p50_ms": statistics.median(r["with"]["write_p50_ms"] or 0 for r in rounds),
        "failed_writes": sum(r["with"]["failed"] for r in rounds),
        "non_2xx": sum(r["with"]["non_2xx"] + r["without"]["non_2xx"] for r in rounds),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit(WRK_MISSING)
    base, info = ensure_index(args.dir, args.chunks, args.rebuild)
    work = Path(tempfile.mkdtemp(prefix="http-load-", dir=args.dir))
    result: dict[str, Any] = {"index": info, "connections": args.connections, "wrk_threads": args.threads,
                              "duration_s": args.duration, "queries": QUERIES}
    try:
        # Writes change the index: serve a copy, so the built one stays as it was for the next run.
        index_dir = work / "index"
        shutil.copytree(base, index_dir)
        script = work / "search.lua"
        script.write_text(WRK_SCRIPT)
        server = Server(index_dir, work / "server.log")
        try:
            if args.server_pid_file:
                args.server_pid_file.write_text(str(server.pid))
            server.wait_ready()
            print(f"server pid {server.pid} on {server.url}", file=sys.stderr, flush=True)
            load = partial(run_wrk, server.url, script=script, connections=args.connections, threads=args.threads,
                           server_pid=server.pid)
            modes = [m.strip() for m in args.modes.split(",") if m.strip()]
            for mode in modes:
                bodies = queries_file(work, mode)
                load(bodies, duration=min(3, args.duration))  # warm up
                result[mode] = load(bodies, duration=args.duration)
                print(f"{mode}: {json.dumps(result[mode])}", file=sys.stderr, flush=True)
            mode = modes[0]
            if args.distinct:
                # Every query new: what a search costs when no cache can answer it.
                result[f"{mode}_distinct"] = load(queries_file(work, mode, DISTINCT), duration=args.duration)
                print(f"{mode} distinct: {json.dumps(result[f'{mode}_distinct'])}", file=sys.stderr, flush=True)
            if args.rounds > 0:
                result["with_writes"] = writes_rounds(load, queries_file(work, mode), server.url, args)
                result["with_writes"]["mode"] = mode
        finally:
            server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the index (about)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/iorag-http-load"))
    parser.add_argument("--rebuild", action="store_true", help="build the index again even if it exists")
    parser.add_argument("--duration", type=int, default=20, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads")
    parser.add_argument("--modes", default="hybrid,dense", help="search modes; the first is also run with writes")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the first mode without, then with writes (median p99s reported)")
    parser.add_argument("--no-distinct", dest="distinct", action="store_false",
                        help="skip the run of the first mode with queries that never repeat")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the served copy and the server log")
    parser.add_argument("--server-pid-file", type=Path, help="write the server's pid here (for a profiler)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    result = measure(args)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    # As bench/scale.py: one thread for FAISS, the load generator needs the other core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
