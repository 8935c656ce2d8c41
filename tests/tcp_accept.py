"""The accept loop the test proxies share (tests/redshift_proxy.py, tests/chaos/pg_proxy.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def accept_until_stopped(
    listener: socket.socket, stopping: threading.Event, serve: Callable[[socket.socket], None]
) -> None:
    """Hand each new connection to ``serve`` on its own thread until ``stopping`` is set."""
    listener.settimeout(0.1)  # closing a listener does not wake a blocked accept()
    while not stopping.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        client.settimeout(None)
        threading.Thread(target=serve, args=(client,), daemon=True).start()
