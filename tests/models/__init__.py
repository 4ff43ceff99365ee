"""A real HTTP file server on 127.0.0.1 for the download tests (also used by the dialog tests).

`FileServer` serves `files` (name -> bytes) from any URL path ending in that name, honours
`Range: bytes=N-` with 206 answers, and can misbehave on purpose:
- drop_after=N: the first response for a file sends N body bytes, then the connection is cut;
- ignore_range=True: answers 200 with the whole file even when a range was asked for;
- corrupt=True: serves the right number of bytes, but wrong ones.
Every request's path and headers are recorded in `requests`.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class Request:
    path: str
    headers: dict[str, str]


@dataclass
class FileServer:
    files: dict[str, bytes]
    drop_after: int | None = None
    ignore_range: bool = False
    corrupt: bool = False
    ssl_context: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self):
        self._dropped = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append(Request(self.path, dict(self.headers.items())))
                name = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[-1]
                body = server.files.get(urllib.parse.unquote(name))
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                if server.corrupt:
                    body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
                start = _range_start(self.headers.get("Range"))
                if start is not None and not server.ignore_range:
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    payload = body[start:]
                else:
                    self.send_response(200)
                    payload = body
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.drop_after is not None and not server._dropped:
                    server._dropped = True
                    self.wfile.write(payload[: server.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL ending in "/", e.g. http://127.0.0.1:54321/models/."""
        scheme = "https" if self.ssl_context is not None else "http"
        host, port = self._httpd.server_address[:2]
        return f"{scheme}://{host}:{port}/models/"

    @property
    def ranges(self) -> list[str | None]:
        """The Range header of each request, in order (None when absent)."""
        return [r.headers.get("Range") for r in self.requests]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first = value[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def fake_checkpoint(size: int = 600_000, seed: int = 7) -> bytes:
    """`size` deterministic pseudo-random bytes standing in for a checkpoint."""
    import random

    return random.Random(seed).randbytes(size)


def registry_entry_for(data: bytes, file_name: str = "sam_test_000000.pth", model_type="vit_b"):
    """A CheckpointInfo for `data`, with its true size and SHA-256 (url unused: pass base_url)."""
    from annotator.models.registry import CheckpointInfo

    return CheckpointInfo(
        model_type=model_type,
        file_name=file_name,
        url="http://127.0.0.1:9/unused/" + file_name,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        title="Test model",
        description="A few hundred kB of random bytes.",
    )
