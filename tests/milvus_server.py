"""A real Milvus standalone server for tests, from the PyPI package `milvus` (2.3.x).

The package ships the server binary and its libraries xz-compressed, plus a
config template. We use its config machinery (`MilvusServerConfig`) to write
`configs/milvus.yaml` with our ports and paths, and start the binary ourselves
rather than through `MilvusServer.start()`, because that changes the test
process's working directory and starts a child that outlives a killed parent.

- Ports: every configurable port is picked free on loopback by the kernel. The
  embedded etcd still binds 127.0.0.1:2379 and 2380 whatever the config says, so
  one server at a time runs on a machine: a lock file held for the server's life
  makes a second test session wait for the first instead of crashing its server.
- Data, logs and config live in a temporary directory; the binaries are
  decompressed once into a cache directory (about 250 MB) and linked from there.
- Authentication is on, and root's well-known password is replaced by a random
  one right after start: the server listens on all interfaces (Milvus 2.3 has
  no setting for that), so nothing else on the machine can use it.
- The child gets SIGKILL if the test process dies (PR_SET_PDEATHSIG), so no
  server is ever left behind; `stop()` ends it with SIGTERM first.
"""

from __future__ import annotations

import ctypes
import lzma
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import filelock

#: The component whose address each `<component>.ip` config key sets (what they advertise).
_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
_PR_SET_PDEATHSIG = 1
#: Held while a server runs: its embedded etcd's ports are fixed (see above).
_ETCD_PORTS_LOCK = Path(tempfile.gettempdir()) / "iorag-milvus-etcd-ports.lock"


class MilvusStartError(RuntimeError):
    """The server did not come up; the message ends with the tail of its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel kills it when our process ends.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def unpack_binaries(cache: Path) -> Path:
    """Decompress the package's server binary and libraries into `cache/<version>/bin` once."""
    import milvus

    target = cache / milvus.__version__ / "bin"
    source = Path(milvus.__file__).parent / "data" / "bin"
    with filelock.FileLock(cache / f"{milvus.__version__}.lock"):
        target.mkdir(parents=True, exist_ok=True)
        for packed in sorted(source.glob("*.lzma")):
            out = target / packed.name.removesuffix(".lzma")
            if out.exists():
                continue
            tmp = out.with_name(out.name + ".part")
            with lzma.open(packed) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            tmp.chmod(0o755)
            os.replace(tmp, out)
    return target


class MilvusServerProcess:
    """One Milvus standalone server on loopback ports with its data under `data_dir`.

    Args:
        data_dir: an empty directory for config, data and logs.
        cache: where the unpacked binaries are kept between runs.
    """

    def __init__(self, data_dir: Path, cache: Path) -> None:
        self.data_dir = Path(data_dir)
        self.cache = Path(cache)
        self.port = 0
        self.health_port = 0
        self.token = ""
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports_lock = filelock.FileLock(_ETCD_PORTS_LOCK)
        self._log = self.data_dir / "logs" / "milvus-console.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        """Start the server and wait until it accepts authenticated clients.

        Raises:
            MilvusStartError: it exited or did not answer within `timeout` (with its log's tail).
        """

        started = time.monotonic()
        try:
            self._ports_lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise MilvusStartError(f"another Milvus server held {_ETCD_PORTS_LOCK} for {timeout:.0f} s") from None
        try:
            self._start(started, timeout)
        except BaseException:
            self.stop()  # releases the ports lock, whatever failed
            raise
        self.startup_seconds = time.monotonic() - started

    def _start(self, started: float, timeout: float) -> None:
        from milvus import MilvusServerConfig

        binaries = unpack_binaries(self.cache)
        config = MilvusServerConfig(data_dir=str(self.data_dir))
        for key in config.configurable_items:
            if key.endswith("_port"):
                config.update(**{key: _free_port()})
        config.set("authorization_enabled", True)
        for component in _COMPONENTS:
            config.set(f"{component}.ip", "127.0.0.1")
        try:
            config.resolve()  # binds each port once to check it, then writes configs/milvus.yaml
        except RuntimeError as exc:  # a port picked free was taken meanwhile by another process
            raise MilvusStartError(f"Milvus ports: {exc}") from exc
        self.port = int(config.get("proxy_port"))
        self.health_port = _free_port()
        (self.data_dir / "bin").symlink_to(binaries, target_is_directory=True)
        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.health_port),
            MILVUS_RUN_DIR=str(self.data_dir / "run"),
            LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(binaries), os.environ.get("LD_LIBRARY_PATH")])),
        )
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                [str(binaries / "milvus"), "run", "standalone"], cwd=self.data_dir, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )
        self._wait_healthy(started + timeout)
        self.token = self._secure(started + timeout)

    def _wait_healthy(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise MilvusStartError(f"Milvus exited with status {self._proc and self._proc.returncode}"
                                       f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if b"OK" in answer.read():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise MilvusStartError(f"Milvus did not become healthy on {url}{self.log_tail()}")

    def _secure(self, deadline: float) -> str:
        """Replace root's default password with a random one; returns the new token."""
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        password = secrets.token_urlsafe(18)
        error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client = MilvusClient(self.uri, token="root:Milvus")
                try:
                    client.update_password("root", "Milvus", password)
                finally:
                    client.close()
                return f"root:{password}"
            except MilvusException as exc:
                # Healthy can come a moment before the proxy takes logins.
                error = exc
                time.sleep(0.5)
        raise MilvusStartError(f"Milvus at {self.uri} refused the default login: {error}{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's console log, for error messages."""
        try:
            text = self._log.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            return f"\n(no log: {exc})"
        return "\n--- milvus log (tail) ---\n" + "\n".join(text)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; idempotent."""
        proc, self._proc = self._proc, None
        try:
            if proc is None or proc.poll() is not None:
                return
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        finally:
            if self._ports_lock.is_locked:
                self._ports_lock.release()
