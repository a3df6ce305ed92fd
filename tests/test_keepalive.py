"""keepalive.py against a real HTTP/1.1 server that records which connection each
request came on: requests share one, a half-read answer or a server that closed an
idle connection costs a new one and never a wrong answer, redirects and errors are
what urllib gave, and a proxy setting is obeyed."""

from __future__ import annotations

import contextlib
import http.server
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from servers import in_thread

from hdenv.exchange import keepalive

BIG = b"x" * (1 << 20)


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: list[tuple[int, str, str]] = []  # (client port, method, path)
    hang_up_after: set[str] = set()  # paths after whose answer the server closes, unsaid

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None
                ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if self.path in self.hang_up_after:
            self.close_connection = True  # as an idle timeout would: no Connection: close

    def _any(self) -> None:
        self.seen.append((self.client_address[1], self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length) if length else b""
        if self.path == "/big":
            self._answer(BIG)
        elif self.path == "/moved":
            self._answer(b"", 302, {"Location": "/small"})
        elif self.path == "/missing":
            self._answer(b"no such thing", 404)
        elif self.path.startswith("http://"):  # a proxy's request line
            self._answer(b"proxied " + self.path.encode())
        else:
            self._answer(b"small " + self.command.encode() + b" " + sent)

    do_GET = do_HEAD = do_PUT = do_POST = _any  # noqa: N815 - http.server's names


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen = []
    Recorder.hang_up_after = set()
    with in_thread(Recorder) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy",
                 "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with contextlib.suppress(AttributeError):
        keepalive._local.pool = {}  # a connection of an earlier test's server


def get(url: str, method: str = "GET", **kw: Any) -> bytes:
    with keepalive.request(method, url, timeout=10, **kw) as resp:
        return bytes(resp.read())


def ports() -> list[int]:
    return [port for port, _method, _path in Recorder.seen]


def test_requests_share_one_connection(server: str) -> None:
    assert get(f"{server}/a") == b"small GET "
    assert get(f"{server}/b", "PUT", data=b"body") == b"small PUT body"
    with keepalive.request("HEAD", f"{server}/c", timeout=10) as resp:
        assert resp.status == 200
    assert get(f"{server}/big") == BIG
    assert get(f"{server}/d") == b"small GET "
    assert len(set(ports())) == 1 and len(ports()) == 5


def test_read1_to_the_end_keeps_the_connection(server: str) -> None:
    with keepalive.request("GET", f"{server}/big", timeout=10) as resp:
        got = b""
        while chunk := resp.read1(1 << 16):
            got += chunk
    assert got == BIG
    assert get(f"{server}/a") == b"small GET "
    assert len(set(ports())) == 1


def test_a_half_read_answer_ends_its_connection(server: str) -> None:
    with keepalive.request("GET", f"{server}/big", timeout=10) as resp:
        assert resp.read(10) == BIG[:10]
    assert get(f"{server}/a") == b"small GET "  # not the rest of /big
    assert len(set(ports())) == 2


def test_an_idle_connection_the_server_closed_is_replaced(server: str) -> None:
    Recorder.hang_up_after = {"/bye"}
    assert get(f"{server}/bye") == b"small GET "
    assert get(f"{server}/after") == b"small GET "
    assert [p for _port, _m, p in Recorder.seen] == ["/bye", "/after"]
    assert len(set(ports())) == 2


def test_redirects_and_errors_are_what_urllib_gave(server: str) -> None:
    assert get(f"{server}/moved") == b"small GET "
    assert [p for _port, _m, p in Recorder.seen] == ["/moved", "/small"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(f"{server}/missing")
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as moved:  # urllib redirects no PUT either
        get(f"{server}/moved", "PUT", data=b"x")
    assert moved.value.code == 302
    assert get(f"{server}/a") == b"small GET "  # error bodies were read away
    assert len(set(ports())) == 1


def test_a_proxy_setting_is_obeyed(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with contextlib.suppress(OSError):  # urlopen makes its opener now, without a proxy
        urllib.request.urlopen(f"{server}/before", timeout=10).close()
    monkeypatch.setenv("http_proxy", server)
    assert get("http://cache.invalid/x") == b"proxied http://cache.invalid/x"
    monkeypatch.setenv("no_proxy", "cache.invalid")
    with pytest.raises(OSError):  # not through the proxy now: the name does not resolve
        get("http://cache.invalid/x")
