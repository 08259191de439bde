"""A small HTTP server on 127.0.0.1 for tests that exercise downloading code without the internet.

It serves an in-memory dict ``path -> (bytes, content type)``; anything else is a 404. It understands
``Range: bytes=N-`` / ``bytes=N-M`` (so resumable downloads can be tested), records every request, and
refuses (503) everything after ``max_requests`` so a runaway client cannot spin forever. It also shuts
itself down after ``lifetime_s`` seconds even if a test forgets to, and its threads are daemons, so a
stuck test can never keep the interpreter alive.

``image_cases()`` builds the mixed bag real URL lists contain: ordinary JPEGs and PNGs, grayscale, CMYK
and RGBA images, one very large photo, corrupt bytes, and URLs that 404.
"""

from __future__ import annotations

import functools
import io
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Request:
    path: str
    range: str | None
    status: int


class LoopbackServer:
    """``with LoopbackServer({"/a.jpg": (data, "image/jpeg")}) as srv: urlopen(srv.url("/a.jpg"))``."""

    def __init__(self, files: dict[str, tuple[bytes, str]] | None = None, max_requests: int = 1000,
                 lifetime_s: float = 120.0):
        self.files = dict(files or {})
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None

    # -- bookkeeping ------------------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(r.path == path for r in self.requests)

    def url(self, path: str) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    # -- lifecycle --------------------------------------------------------------------------------------

    def __enter__(self) -> "LoopbackServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _record(self, status: int) -> None:
                with owner._lock:
                    owner.requests.append(Request(self.path, self.headers.get("Range"), status))

            def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None,
                      head_only: bool = False) -> None:
                self._record(status)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not head_only:
                    self.wfile.write(body)

            def _serve(self, head_only: bool) -> None:
                if owner.request_count >= owner.max_requests:
                    return self._send(503, b"request budget exhausted", "text/plain", head_only=head_only)
                entry = owner.files.get(self.path.split("?", 1)[0])
                if entry is None:
                    return self._send(404, b"not found", "text/plain", head_only=head_only)
                data, content_type = entry
                spec = self.headers.get("Range")
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip()) if spec else None
                if match:
                    start = int(match.group(1))
                    end = int(match.group(2)) if match.group(2) else len(data) - 1
                    if start >= len(data):
                        return self._send(416, b"", content_type, {"Content-Range": f"bytes */{len(data)}"},
                                          head_only=head_only)
                    end = min(end, len(data) - 1)
                    return self._send(206, data[start:end + 1], content_type,
                                      {"Content-Range": f"bytes {start}-{end}/{len(data)}"}, head_only=head_only)
                return self._send(200, data, content_type, head_only=head_only)

            def do_GET(self):  # noqa: N802 - http.server's naming
                self._serve(head_only=False)

            def do_HEAD(self):  # noqa: N802
                self._serve(head_only=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        # A hard stop, whatever the test does.
        self._timer = threading.Timer(self.lifetime_s, self.close)
        self._timer.daemon = True
        self._timer.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._timer is not None:
            self._timer.cancel()

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------
# Generated images
# --------------------------------------------------------------------------------------------------


def _gradient(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth RGB image (compresses like a photo; random noise would make huge JPEGs)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    a, b, c = (rng.uniform(0, 255, size=(1, 1, 3)).astype(np.float32) for _ in range(3))
    return np.clip(a * x + b * y + c * (1 - x) * (1 - y), 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def large_jpeg() -> bytes:
    """A 4000x3000 photo-sized JPEG, generated once per test session."""
    return encode(Image.fromarray(_gradient(4000, 3000, seed=12345)), "JPEG", quality=80)


# What img2dataset should make of each kind: True = a sample in the shards, False = a counted failure.
CASE_OK = {"jpeg": True, "png": True, "gray": True, "cmyk": True, "rgba": True, "large": True,
           "missing": False, "corrupt": False}


def image_case(kind: str, index: int, size: int = 48) -> tuple[bytes, str] | None:
    """(bytes, content type) for one case; ``None`` means "not served" (a 404)."""
    rgb = Image.fromarray(_gradient(size + index % 7, size, seed=index))  # slightly varied aspect ratios
    if kind == "jpeg":
        return encode(rgb, "JPEG", quality=90), "image/jpeg"
    if kind == "png":
        return encode(rgb, "PNG"), "image/png"
    if kind == "gray":
        return encode(rgb.convert("L"), "JPEG"), "image/jpeg"
    if kind == "cmyk":
        return encode(rgb.convert("CMYK"), "JPEG"), "image/jpeg"
    if kind == "rgba":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray(_gradient(rgb.width, rgb.height, seed=index + 99)[:, :, 0]))
        return encode(rgba, "PNG"), "image/png"
    if kind == "large":
        return large_jpeg(), "image/jpeg"
    if kind == "corrupt":
        # Starts like a JPEG, then garbage: the kind of thing a CDN error page or a truncated file gives.
        return b"\xff\xd8\xff\xe0" + np.random.default_rng(index).bytes(500), "image/jpeg"
    if kind == "missing":
        return None
    raise ValueError(kind)


def image_cases(kinds: list[str]) -> tuple[dict[str, tuple[bytes, str]], list[tuple[str, str, str]]]:
    """Build served files and a url list for ``kinds`` (one entry per row, in order).

    Returns ``(files, rows)`` where rows are ``(path, caption, kind)``.
    """
    files: dict[str, tuple[bytes, str]] = {}
    rows = []
    for i, kind in enumerate(kinds):
        ext = "png" if kind in ("png", "rgba") else "jpg"
        path = f"/img/{i:04d}_{kind}.{ext}"
        served = image_case(kind, i)
        if served is not None:
            files[path] = served
        rows.append((path, f"a {kind} test picture number {i}", kind))
    return files, rows
