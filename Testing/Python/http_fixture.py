"""A real HTTP server on 127.0.0.1 for download tests: Range support and configurable misbehaviour.

``serve(mode, payload)`` starts one serving ``payload`` at ``/weights/model.ckpt``; ``serve(files={path: bytes})``
serves several files (404 for other paths). ``srv.files`` may be changed while it runs (a file replaced upstream).
Modes: good, 404, corrupt (first byte flipped), truncate (half the body, clean close), kill (half, then a reset),
stall (half, then silence), ignore_range (always 200 with the whole file).
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

DEFAULT_PATH = "/weights/model.ckpt"


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.files = dict(files)
        self.requests: list[dict[str, str | None]] = []
        self.stopped = False

    @property
    def payload(self) -> bytes:
        return next(iter(self.files.values()))

    def url(self, path: str = DEFAULT_PATH) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address) -> None:  # misbehaving modes break sockets on purpose
        pass

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.shutdown()
            self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if srv.mode == "404" or self.path not in srv.files:
            self.send_error(404, "Not Found")
            return
        data = srv.files[self.path]
        if srv.mode == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and srv.mode != "ignore_range":
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if srv.mode == "truncate":  # fewer bytes than Content-Length, then a clean close
            self.wfile.write(body[: len(body) // 2])
        elif srv.mode == "kill":  # half the body, then an abrupt reset (as if the server died)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif srv.mode == "stall":  # half the body, then silence longer than the client's timeout
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(1.0)
        else:
            self.wfile.write(body)


def start_server(mode: str = "good", files: dict[str, bytes] | None = None) -> LocalServer:
    srv = LocalServer(mode, files or {})
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


@pytest.fixture
def serve():
    """``serve(mode, payload)`` -> (server, URL of the payload); ``serve(files=...)`` -> (server, URL of the first)."""
    servers: list[LocalServer] = []

    def start(mode: str = "good", payload: bytes | None = None, files: dict[str, bytes] | None = None):
        srv = start_server(mode, files if files is not None else {DEFAULT_PATH: payload or b""})
        servers.append(srv)
        return srv, srv.url(next(iter(srv.files)))

    yield start
    for srv in servers:
        srv.stop()


def free_port_url(path: str = "/model.ckpt") -> str:
    """A URL on a port that was free a moment ago: nobody listens there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
