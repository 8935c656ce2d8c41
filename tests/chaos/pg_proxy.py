"""Test helper: a TCP proxy in front of PostgreSQL that cuts connections at chosen statements.

It reads the frontend protocol message by message (type byte, int32 length, payload) and
recognises the SQL of a simple ``Query`` (``Q``) or an extended-protocol ``Parse`` (``P``). A
`Cut` names a statement by a regular expression and where to cut:

- ``before``: the statement never reaches the server; the client sees its connection die;
- ``after``: the statement is forwarded, then the connection dies at once (mid-``COPY`` when the
  statement is a ``COPY … FROM STDIN``: the server gets the start of the copy and no data);
- ``reply``: the statement runs on the server, but its ``CommandComplete`` is dropped and the
  connection dies: for ``COMMIT`` this is the ambiguous case, committed on the server while the
  client only sees a broken connection.

Both sockets are shut down, so the server ends the session (rolling back whatever it had not
committed) exactly as after a network failure. Each cut fires on one connection, ``times``
times in all; everything else is forwarded byte for byte.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal

from tests.redshift_proxy import _GSSENC_REQUEST_CODE, _SSL_REQUEST_CODE, _recv_exact
from tests.tcp_accept import accept_until_stopped

CutWhen = Literal["before", "after", "reply"]


@dataclass
class Cut:
    """Cut the connection at the next statement matching ``pattern`` (case-insensitive)."""

    pattern: str
    when: CutWhen = "before"
    times: int = 1
    fired: int = 0
    #: The statements the cut fired on, for the test's assertions.
    statements: list[str] = field(default_factory=list)

    def matches(self, sql: str) -> bool:
        return self.fired < self.times and re.search(self.pattern, sql, re.IGNORECASE) is not None


def _recv_message(sock: socket.socket) -> tuple[bytes, bytes, bytes]:
    """One protocol message: type byte, int32 length (counting itself), payload."""
    kind = _recv_exact(sock, 1)
    header = _recv_exact(sock, 4)
    (length,) = struct.unpack("!i", header)
    return kind, header, _recv_exact(sock, length - 4)


def statement_of(kind: bytes, payload: bytes) -> str | None:
    """The SQL text of a ``Query`` or ``Parse`` message; None for any other message."""
    if kind == b"Q":
        return payload.rstrip(b"\x00").decode("utf-8", "replace")
    if kind == b"P":
        # Parse: statement name NUL, query NUL, parameter types.
        _name, _, rest = payload.partition(b"\x00")
        query, _, _ = rest.partition(b"\x00")
        return query.decode("utf-8", "replace")
    return None


class _Session:
    """One client connection and its upstream, with the reply cut armed by a ``reply`` rule."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.cut_reply: Cut | None = None
        self.dead = threading.Event()

    def kill(self) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CuttingPostgresProxy:
    """Listens on 127.0.0.1 (a free port), forwards to PostgreSQL, cuts per the `Cut` rules.

    Attributes:
        port: the port to connect to.
        statements: every statement seen, in order, across connections.
        connections: connections accepted so far.
    """

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cuts: list[Cut] = []
        self.statements: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._sessions: list[_Session] = []
        self._stopping = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="pg-cut")

    def url(self, base_url: str) -> str:
        """``base_url`` (a SQLAlchemy URL of the upstream server) pointed at the proxy."""
        import sqlalchemy as sa

        parsed = sa.make_url(base_url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def add(self, cut: Cut) -> Cut:
        with self._lock:
            self.cuts.append(cut)
        return cut

    def kill_sessions(self) -> int:
        """Cut every open connection now (idle ones in a pool included); how many were open."""
        with self._lock:
            alive = [session for session in self._sessions if not session.dead.is_set()]
        for session in alive:
            session.kill()
        return len(alive)

    def __enter__(self) -> CuttingPostgresProxy:
        self._listener.listen(16)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for session in self._sessions:
                session.kill()

    def _accept_loop(self) -> None:
        accept_until_stopped(self._listener, self._stopping, self._serve)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session(client, upstream)
        with self._lock:
            self._sessions.append(session)
            self.connections += 1
        try:
            self._forward_startup(client, upstream)
        except OSError:
            session.kill()
            return
        threading.Thread(target=self._pipe_server, args=(session,), daemon=True).start()
        self._pipe_client(session)

    @staticmethod
    def _forward_startup(client: socket.socket, upstream: socket.socket) -> None:
        while True:
            (length,) = struct.unpack("!i", _recv_exact(client, 4))
            body = _recv_exact(client, length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in (_SSL_REQUEST_CODE, _GSSENC_REQUEST_CODE):
                client.sendall(b"N")  # no TLS here; the client goes on in clear text
                continue
            upstream.sendall(struct.pack("!i", length) + body)
            return

    def _match(self, sql: str) -> Cut | None:
        with self._lock:
            self.statements.append(sql)
            for cut in self.cuts:
                if cut.matches(sql):
                    cut.fired += 1
                    cut.statements.append(sql)
                    return cut
        return None

    def _pipe_client(self, session: _Session) -> None:
        try:
            while not session.dead.is_set():
                kind, header, payload = _recv_message(session.client)
                sql = statement_of(kind, payload)
                cut = self._match(sql) if sql is not None else None
                if cut is not None and cut.when == "before":
                    session.kill()
                    return
                if cut is not None and cut.when == "reply":
                    session.cut_reply = cut
                session.upstream.sendall(kind + header + payload)
                if cut is not None and cut.when == "after":
                    session.kill()
                    return
        except OSError:
            session.kill()

    def _pipe_server(self, session: _Session) -> None:
        try:
            while not session.dead.is_set():
                kind, header, payload = _recv_message(session.upstream)
                if kind == b"C" and session.cut_reply is not None:
                    # The server has run the statement (committed, for COMMIT); the client
                    # never hears of it.
                    session.kill()
                    return
                session.client.sendall(kind + header + payload)
        except OSError:
            session.kill()
