"""Real services for cache tests, each started on a free loopback port and stopped after.

`registry()` runs Debian's docker-registry (the CNCF distribution registry)
with its storage in a temporary directory; `http_server()` serves a
directory with Python's own http.server in a subprocess. Both stop exactly
the process they started.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from conftest import require_tool

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT}s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _serving(argv: list[str], url: str, log: Path) -> Iterator[None]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        _wait_for(url, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def registry(workdir: Path) -> Iterator[str]:
    """A docker-registry on 127.0.0.1; yields `127.0.0.1:PORT`."""
    exe = require_tool("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    with _serving([exe, "serve", str(config)], f"http://127.0.0.1:{port}/v2/",
                  workdir / "registry.log"):
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def http_server(directory: Path, log: Path) -> Iterator[str]:
    """A static server over `directory` (tests/staticserver.py: http.server's files over
    kept-alive HTTP/1.1 connections, as nginx or S3 serve a cache); yields its base URL
    (ending in /)."""
    port = free_port()
    argv = [sys.executable, str(Path(__file__).with_name("staticserver.py")), str(directory),
            str(port)]
    with _serving(argv, f"http://127.0.0.1:{port}/", log):
        yield f"http://127.0.0.1:{port}/"


@contextlib.contextmanager
def bad_http_server(directory: Path, log: Path, mode: str) -> Iterator[str]:
    """tests/badserver.py over `directory` in `mode` (trickle, oversend, bigmeta); yields its URL."""
    port = free_port()
    argv = [sys.executable, str(Path(__file__).with_name("badserver.py")), str(directory),
            str(port), mode]
    with _serving(argv, f"http://127.0.0.1:{port}/", log):
        yield f"http://127.0.0.1:{port}/"


@contextlib.contextmanager
def in_thread(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threading HTTP server on 127.0.0.1 in this process, for a handler a test defines
    (to record or misbehave); yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
