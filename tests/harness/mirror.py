"""A throwaway HTTP server on 127.0.0.1 that serves files from memory: a stand-in data mirror.

Tests never reach the internet, so every case's download code (checksum, atomic write,
progress bar) is exercised against this instead, and benchmarks use it to feed real files
through the real download path:

    with mirror.serve_files({"adult.data": body}) as url:
        data.load_adult(cache, mirror=url, checksums=...)

`truncate=True` sends half of each body with the full Content-Length, as a connection that
drops mid-download would; a name it does not hold gets a 404.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def serve_files(files: Mapping[str, bytes], *, truncate: bool = False) -> Iterator[str]:
    """Serve files at http://127.0.0.1:<free port>/<name> until the block ends; yield the URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (the name http.server calls)
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncate else body)

        def log_message(self, *args: object) -> None:  # keep test and benchmark output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
