"""A static cache server that misbehaves on purpose, run as its own process by servers.py.

`python badserver.py DIRECTORY PORT MODE`. Everything is served as
http.server would, except:
  trickle   archives/*: the right headers, then one byte every 5 seconds
  oversend  archives/*: the file, then junk without end (no Content-Length)
  bigmeta   artifacts/*.json: junk without end (no Content-Length)
"""

from __future__ import annotations

import functools
import http.server
import sys
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    mode = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.lstrip("/")
        if self.mode == "trickle" and path.startswith("archives/"):
            self.send_response(200)
            self.send_header("Content-Length", "100000000")
            self.end_headers()
            self._endless(b"x", 5.0)
        elif self.mode == "oversend" and path.startswith("archives/"):
            with open(self.translate_path(self.path), "rb") as f:
                data = f.read()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(data)
            self._endless(b"\0" * (1 << 20), 0.0, 200)
        elif self.mode == "bigmeta" and path.startswith("artifacts/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"pad": "')
            self._endless(b"a" * (1 << 20), 0.0, 64)
        else:
            super().do_GET()

    def _endless(self, chunk: bytes, pause: float, count: int = 1 << 16) -> None:
        """`count` chunks (bounded so code that reads it all still finishes)."""
        self.close_connection = True
        try:
            for _ in range(count):
                self.wfile.write(chunk)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            pass  # the client stopped reading: what it should do


def main() -> None:
    directory, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Handler.mode = mode
    handler = functools.partial(Handler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
