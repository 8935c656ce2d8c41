"""Test helper: a local TCP proxy that lets ``redshift_connector`` talk to plain PostgreSQL.

The driver speaks the PostgreSQL wire protocol but differs from PostgreSQL in two places
(see NOTES.md, "Warehouse"):

- its startup message carries four Redshift-only parameters (``client_protocol_version``,
  ``driver_version``, ``os_version``, ``driver_discovery_version``) that PostgreSQL rejects with
  "unrecognized configuration parameter": the proxy drops them from the startup message;
- it parses the ``server_version`` ParameterStatus with ``packaging.version.parse``, which fails on
  a Debian build's ``15.20 (Debian 15.20-0+deb12u1)``: the proxy rewrites that one message to the
  leading version number (``15.20``).

Everything else is forwarded byte for byte, so the driver's real parameter binding, extended
query protocol and transactions run against the real server. The client must connect with
``ssl=False`` (an SSLRequest is refused with ``N``, as a server without TLS does).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading

from tests.tcp_accept import accept_until_stopped

#: Startup parameters only Redshift understands.
REDSHIFT_ONLY_STARTUP_PARAMETERS = frozenset(
    {b"client_protocol_version", b"driver_version", b"os_version", b"driver_discovery_version"}
)
_SSL_REQUEST_CODE = 80877103
_GSSENC_REQUEST_CODE = 80877104
_PROTOCOL_3 = 196608
_LEADING_VERSION = re.compile(rb"^\d+(\.\d+)*")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        data += chunk
    return bytes(data)


def rewrite_startup(body: bytes) -> bytes:
    """Drop the Redshift-only parameters from a v3 startup message body (after the length).

    Args:
        body: protocol code (int32) then NUL-terminated key/value pairs and a final NUL.

    Returns:
        The body without the Redshift-only pairs (the caller prefixes the new length).
    """
    (code,) = struct.unpack("!i", body[:4])
    if code != _PROTOCOL_3:
        return body
    fields = body[4:].split(b"\x00")
    # fields: k1, v1, k2, v2, …, "", "" (the terminator yields two empty strings).
    pairs = list(zip(fields[0::2], fields[1::2], strict=False))
    kept = [
        (key, value) for key, value in pairs if key and key not in REDSHIFT_ONLY_STARTUP_PARAMETERS
    ]
    return body[:4] + b"".join(key + b"\x00" + value + b"\x00" for key, value in kept) + b"\x00"


def rewrite_server_message(kind: bytes, payload: bytes) -> bytes:
    """Rewrite ``ParameterStatus server_version`` to its leading number; other messages as is."""
    if kind == b"S" and payload.startswith(b"server_version\x00"):
        value = payload[len(b"server_version\x00") : -1]
        match = _LEADING_VERSION.match(value)
        if match:
            payload = b"server_version\x00" + match.group(0) + b"\x00"
    return payload


class RedshiftToPostgresProxy:
    """Listens on 127.0.0.1 (a free port) and forwards each connection to ``upstream``.

    Use as a context manager; ``port`` is set once started. One thread accepts, two threads per
    connection copy bytes (the server side message by message, to rewrite ``server_version``).
    """

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="rs-proxy")

    def __enter__(self) -> RedshiftToPostgresProxy:
        self._listener.listen(16)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                self._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _accept_loop(self) -> None:
        accept_until_stopped(self._listener, self._stopping, self._serve)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            self._close(client)
            return
        for sock in (client, upstream):
            # Message-by-message forwarding meets Nagle + delayed ACK: 40 ms stalls without this.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets += [client, upstream]
        try:
            self._forward_startup(client, upstream)
        except (ConnectionError, OSError):
            self._close(client)
            self._close(upstream)
            return
        threading.Thread(target=self._pipe_raw, args=(client, upstream), daemon=True).start()
        self._pipe_server_messages(upstream, client)

    def _forward_startup(self, client: socket.socket, upstream: socket.socket) -> None:
        while True:
            (length,) = struct.unpack("!i", _recv_exact(client, 4))
            body = _recv_exact(client, length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in (_SSL_REQUEST_CODE, _GSSENC_REQUEST_CODE):
                client.sendall(b"N")  # no TLS here; the client goes on in clear text
                continue
            body = rewrite_startup(body)
            upstream.sendall(struct.pack("!i", len(body) + 4) + body)
            return

    def _pipe_raw(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(target)

    def _pipe_server_messages(self, source: socket.socket, target: socket.socket) -> None:
        # After the startup message every server message is: type byte, int32 length, payload.
        try:
            while True:
                kind = _recv_exact(source, 1)
                (length,) = struct.unpack("!i", _recv_exact(source, 4))
                payload = rewrite_server_message(kind, _recv_exact(source, length - 4))
                target.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)
        except (ConnectionError, OSError):
            pass
        finally:
            self._close(source)
            self._close(target)
