"""HTTP requests over kept-alive connections, one per thread and server.

A pull of a 200-artifact profile makes 400 to 600 requests (OCI: manifest,
description, archive for each), a push more. `urllib.request.urlopen` opens a
new TCP (and TLS) connection for each and closes it after: at a few
milliseconds apiece that was most of a pull's time for small artifacts. Here
each thread keeps one `http.client` connection per scheme, host and port and
sends its next request on it, as curl and every registry client do.

What urllib did that matters is kept: redirects of GET and HEAD are followed
(a registry may send blobs from elsewhere; other methods get the 3xx as an
error, as urllib gives them), HTTPS uses the default verified context, and a
configured proxy (`http_proxy`, `https_proxy`, `no_proxy`) sends the request
through urllib, which knows proxies. A connection the server closed while it
sat idle is found when the next request fails before any answer: that request
is sent once more on a new connection. A body that cannot be sent twice (a file
being uploaded) never risks that: it goes on a new connection. A response the
caller leaves unread, in part, ends its connection: the next request must not
read the rest of this one's body as its answer.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
import threading
import urllib.error
import urllib.parse
from typing import Any

MAX_REDIRECTS = 5
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          http.client.CannotSendRequest, http.client.BadStatusLine)

_local = threading.local()
_tls: list[ssl.SSLContext] = []


def _context() -> ssl.SSLContext:
    if not _tls:
        _tls.append(ssl.create_default_context())
    return _tls[0]


class Response:
    """An `http.client` response whose connection goes back to its thread's pool when
    the body was read to the end, and is closed otherwise."""

    def __init__(self, raw: http.client.HTTPResponse, key: tuple[str, str],
                 conn: http.client.HTTPConnection):
        self.raw = raw
        self.key = key
        self.conn = conn
        self.status = raw.status
        self.reason = raw.reason
        self.headers = raw.headers
        self.fp = raw.fp  # the socket under it, for transfer.cancellable

    def read(self, amt: int | None = None) -> bytes:
        return self.raw.read(amt)

    def read1(self, amt: int = -1) -> bytes:
        return self.raw.read1(amt)

    def close(self) -> None:
        # read1 leaves a body read to its last byte open (length 0), read closes it
        finished = self.raw.isclosed() or self.raw.length == 0
        self.raw.close()
        if not finished:  # the rest of the body is still on the wire
            _drop(self.key, self.conn)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _connections() -> dict[tuple[str, str], http.client.HTTPConnection]:
    pool: dict[tuple[str, str], http.client.HTTPConnection] | None = getattr(_local, "pool",
                                                                             None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def _drop(key: tuple[str, str], conn: http.client.HTTPConnection | None = None) -> None:
    """Close this thread's connection to `key` (only if it is `conn`, when given)."""
    pool = _connections()
    current = pool.get(key)
    if current is not None and (conn is None or current is conn):
        del pool[key]
        current.close()
    elif conn is not None:
        conn.close()


def _connection(key: tuple[str, str], timeout: float) -> tuple[http.client.HTTPConnection, bool]:
    """(this thread's connection to `key`, whether it was used before)."""
    pool = _connections()
    conn = pool.get(key)
    if conn is not None:
        conn.timeout = timeout
        return conn, True
    scheme, netloc = key
    if scheme == "https":
        conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=_context())
    else:
        conn = http.client.HTTPConnection(netloc, timeout=timeout)
    pool[key] = conn
    return conn, False


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")


def _proxied(url: str) -> bool:
    """Whether urllib would send `url` through a proxy (asked only when one is set: its
    reading of the whole environment cost more than a request on a kept connection)."""
    if not any(os.environ.get(name) for name in PROXY_VARIABLES):
        return False
    # here: with no proxy set, a pull never loads urllib.request (~5 ms)
    from urllib.request import getproxies, proxy_bypass

    proxies = getproxies()
    if not proxies:
        return False
    host = urllib.parse.urlsplit(url).hostname or ""
    return urllib.parse.urlsplit(url).scheme in proxies and not proxy_bypass(host)


def request(method: str, url: str, *, data: Any = None, headers: dict[str, str] | None = None,
            timeout: float) -> Any:
    """The response to `method url` with a 2xx status; urllib's HTTPError for any other
    final status (after following up to MAX_REDIRECTS redirects of GET and HEAD), OSError
    or http.client.HTTPException when no answer came."""
    headers = dict(headers or {})
    if _proxied(url):
        from urllib.request import Request, build_opener  # _proxied loaded it

        req = Request(url, data=data, method=method, headers=headers)
        # an opener of its own: urlopen's is made once, with the proxies of that moment
        return build_opener().open(req, timeout=timeout)
    for _ in range(MAX_REDIRECTS + 1):
        resp = _send(method, url, data, headers, timeout)
        if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
            location = resp.headers.get("Location")
            _discard(resp)
            if not location:
                raise urllib.error.HTTPError(url, resp.status, "redirect without a Location",
                                             resp.headers, None)
            url = urllib.parse.urljoin(url, location)
            if _proxied(url):
                return request(method, url, data=data, headers=headers, timeout=timeout)
            continue
        if 200 <= resp.status < 300:
            return resp
        code, reason, answer = resp.status, resp.reason, resp.headers
        _discard(resp)
        raise urllib.error.HTTPError(url, code, reason, answer, None)
    raise urllib.error.HTTPError(url, 310, f"more than {MAX_REDIRECTS} redirects",
                                 http.client.HTTPMessage(), None)


def _discard(resp: Response) -> None:
    """Read a small error or redirect body away so the connection can be used again."""
    try:
        length = int(resp.headers.get("Content-Length") or -1)
    except ValueError:
        length = -1
    if 0 <= length <= 1 << 16 or resp.raw.chunked:
        with contextlib.suppress(OSError, http.client.HTTPException):
            resp.raw.read(1 << 16)
    resp.close()


def _send(method: str, url: str, data: Any, headers: dict[str, str], timeout: float
          ) -> Response:
    parts = urllib.parse.urlsplit(url)
    key = (parts.scheme, parts.netloc)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    if data is not None and "Content-Length" not in headers and isinstance(data, bytes):
        headers["Content-Length"] = str(len(data))
    replayable = data is None or isinstance(data, bytes)
    if not replayable:  # a body that cannot be sent twice goes on a connection just made
        _drop(key)
    while True:
        conn, reused = _connection(key, timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            raw = conn.getresponse()
        except _STALE:
            _drop(key)
            if reused and replayable:
                continue  # the server closed it while it was idle: once more, on a new one
            raise
        except BaseException:
            _drop(key)
            raise
        if raw.will_close:
            _connections().pop(key, None)  # the response owns the socket now
        if method == "HEAD":
            raw.close()  # no body follows, whatever the headers say
        return Response(raw, key, conn)
