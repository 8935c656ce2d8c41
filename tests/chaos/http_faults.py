"""Test helper: an HTTP proxy in front of moto's server that injects the faults real AWS gives.

On a chosen share of requests (drawn from a seeded generator, so a run is repeatable) it answers
with one fault instead of, or after, forwarding the request:

- ``slowdown``: ``503 SlowDown`` with S3's XML error body (throttling); not forwarded;
- ``internal``: ``500 InternalError``; not forwarded;
- ``reset``: the connection is reset (RST) before the request is forwarded;
- ``lost_reply``: the request is forwarded and runs, then the connection is reset before the
  reply: the client cannot know that its write happened (the ambiguous case);
- ``slow``: the reply comes after ``slow_seconds``;
- ``truncated``: the reply's headers promise the whole body, half of it comes, then the
  connection closes.

`FaultyHttpProxy.injected` counts the faults by kind and `requests` the requests seen, so a test
reports how many faults its operations survived; `log` names the client each fault hit (boto3,
Arrow's AWS SDK, delta-rs' object_store), since only boto3 reports its retries to us. Clients are
pointed at ``endpoint``.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

FaultKind = Literal["slowdown", "internal", "reset", "lost_reply", "slow", "truncated"]
ALL_FAULTS: tuple[FaultKind, ...] = (
    "slowdown",
    "internal",
    "reset",
    "lost_reply",
    "slow",
    "truncated",
)
#: Faults a boto3 client answers by sending the request again (a truncated body or a slow
#: reply is not a failed request to it).
BOTOCORE_RETRIED: frozenset[FaultKind] = frozenset({"slowdown", "internal", "reset", "lost_reply"})
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
_ERROR_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>chaos</RequestId></Error>"
)


class InjectedFault(NamedTuple):
    method: str
    path: str
    kind: FaultKind
    #: The first product of the request's User-Agent: ``Boto3``, ``aws-sdk-cpp``, ...
    client: str


def client_of(user_agent: str) -> str:
    """The first product token of a User-Agent (``Boto3/1.35.0 md/...`` gives ``Boto3``)."""
    return user_agent.split("/", 1)[0].split(" ", 1)[0]


class FaultyHttpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream`` (``http://host:port``).

    Args:
        upstream: the real endpoint, e.g. moto's server.
        rate: share of requests that get a fault (0 to 1).
        kinds: the faults to draw from, uniformly.
        seed: seeds the draw; the same requests in the same order get the same faults.
        slow_seconds: how long a ``slow`` reply waits.
        methods: only requests with these HTTP methods get faults (all if None).
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        kinds: Iterable[FaultKind] = ALL_FAULTS,
        seed: int = 0,
        slow_seconds: float = 0.3,
        methods: Iterable[str] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate = rate
        self.kinds = tuple(kinds)
        self.slow_seconds = slow_seconds
        self.methods = None if methods is None else {m.upper() for m in methods}
        self.injected: Counter[str] = Counter()
        self.requests = 0
        #: Each faulted request, in order.
        self.log: list[InjectedFault] = []
        self._script: list[tuple[FaultKind, str | None]] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def faults(self) -> int:
        return sum(self.injected.values())

    def queue(self, *kinds: FaultKind, client: str | None = None) -> None:
        """Give the next requests (of ``methods``, and of ``client`` if given, see `client_of`)
        these faults, one each, before any drawn."""
        with self._lock:
            self._script.extend((kind, client) for kind in kinds)

    def faults_met_by(self, client: str, bucket: str, kinds: Iterable[FaultKind]) -> int:
        """How many faults of ``kinds`` hit ``client``'s requests to ``bucket`` (path-style:
        its objects ``/bucket/key`` and the bucket itself, ``/bucket?list-type=2``)."""
        wanted = set(kinds)
        return sum(
            1
            for fault in self.log
            if fault.client == client
            and urlsplit(fault.path).path.split("/")[1] == bucket
            and fault.kind in wanted
        )

    def refusal(self, method: str, path: str, headers: Message) -> tuple[int, str, str] | None:
        """An AWS error answer (status, code, message) to give this request instead of
        forwarding it, or None. None here; subclasses refuse credentials or writes."""
        return None

    def draw(self, method: str, path: str, client: str = "") -> FaultKind | None:
        """The fault for this request from ``client`` (see `client_of`), or None (counts it)."""
        with self._lock:
            self.requests += 1
            if self.methods is not None and method not in self.methods:
                return None
            scripted = next(
                (i for i, (_, only) in enumerate(self._script) if only in (None, client)), None
            )
            if scripted is not None:
                kind = self._script.pop(scripted)[0]
            elif self.kinds and self._random.random() < self.rate:
                kind = self._random.choice(self.kinds)
            else:
                return None
            self.injected[kind] += 1
            self.log.append(InjectedFault(method, path, kind, client))
            return kind

    def __enter__(self) -> FaultyHttpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a socket the proxy reset on purpose fails to flush; that is the point


def _handler_for(proxy: FaultyHttpProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(_FaultHandler):
        pass

    Handler.proxy = proxy
    return Handler


class _FaultHandler(BaseHTTPRequestHandler):
    proxy: FaultyHttpProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # -- one request ----------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        refused = self.proxy.refusal(self.command, self.path, self.headers)
        if refused is not None:
            self._error(*refused)
            return
        fault = self.proxy.draw(
            self.command, self.path, client_of(self.headers.get("User-Agent", ""))
        )
        if fault == "slowdown":
            self._error(503, "SlowDown", "Please reduce your request rate.")
            return
        if fault == "internal":
            self._error(500, "InternalError", "We encountered an internal error.")
            return
        if fault == "reset":
            self._reset()
            return
        status, reason, headers, payload = self._forward(body)
        if fault == "lost_reply":
            self._reset()
            return
        if fault == "slow":
            time.sleep(self.proxy.slow_seconds)
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        length = len(payload)
        if self.command == "HEAD":
            length = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if fault == "truncated" and payload:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self._close()
            return
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.proxy.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            connection.close()

    def _error(self, status: int, code: str, message: str) -> None:
        payload = _ERROR_BODY.format(code=code, message=message).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout: close() sends RST, as a dropped connection does.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._close()

    def _close(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.close()
