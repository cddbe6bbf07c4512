"""``FaultProxy``: a TCP pass-through on loopback that misbehaves on demand.

Put between the library and a real server (``proxy.url(server_url)``), it forwards
bytes both ways until told otherwise:

- ``delay(seconds)``: every chunk waits ``seconds`` before it is forwarded.
- ``blackhole()``: the connections stay open and nothing is forwarded either way, as in
  a network partition that TCP rides out: what was held back is delivered after
  ``heal()`` (late), unless its connection was closed meanwhile.
- ``drop_replies()``: requests reach the server, its replies are thrown away.
- ``cut_after_request()``: the next request is forwarded, then its connection is
  closed at both ends (the client never sees the reply).
- ``reset_all()``: every open connection is reset (RST to the client), now.
- ``heal()``: back to a plain pass-through.

One thread accepts, two threads pump each connection. ``close()`` stops everything.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FaultProxy"]

_PASS, _BLACKHOLE, _DROP_REPLIES, _CUT = "pass", "blackhole", "drop replies", "cut after request"


class _Pair:
    """One proxied connection: the client's socket and ours to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.dead = False
        self._lock = threading.Lock()

    def close(self, *, reset: bool = False) -> None:
        """Close both ends (with an RST to the client when ``reset``); idempotent."""
        with self._lock:
            if self.dead:
                return
            self.dead = True
        if reset:
            linger = struct.pack("ii", 1, 0)
            with contextlib.suppress(OSError):
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):  # wakes a pump blocked in recv, sends nothing
                sock.shutdown(socket.SHUT_RD)
            if not reset:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
            sock.close()


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``target`` (host, port); see the module doc."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._state = threading.Condition()
        self._mode = _PASS
        self._delay = 0.0
        self._pairs: set[_Pair] = set()
        self._closed = False
        #: Connections accepted, and connections cut or reset by a fault, so far.
        self.connections = 0
        self.faults = 0
        threading.Thread(target=self._accept, name="faultproxy-accept", daemon=True).start()

    @classmethod
    def before(cls, url: str) -> FaultProxy:
        """A proxy in front of the server of ``url`` (``scheme://[user@]host:port/...``)."""
        parts = urlsplit(url)
        assert parts.hostname is not None, url
        assert parts.port is not None, url
        return cls((parts.hostname, parts.port))

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    # Faults.

    def delay(self, seconds: float) -> None:
        self._set(_PASS, seconds)

    def blackhole(self) -> None:
        self._set(_BLACKHOLE)

    def drop_replies(self) -> None:
        self._set(_DROP_REPLIES)

    def cut_after_request(self) -> None:
        self._set(_CUT)

    def heal(self) -> None:
        self._set(_PASS)

    def reset_all(self) -> None:
        """Reset every open connection now (new ones are served as the mode says)."""
        with self._state:
            pairs = list(self._pairs)
            self.faults += len(pairs)
        for pair in pairs:
            pair.close(reset=True)

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.notify_all()
            pairs = list(self._pairs)
        self._listener.close()
        for pair in pairs:
            pair.close()

    def _set(self, mode: str, delay: float = 0.0) -> None:
        with self._state:
            self._mode, self._delay = mode, delay
            self._state.notify_all()

    # The threads.

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            pair = _Pair(client, server)
            with self._state:
                if self._closed:
                    pair.close()
                    return
                self._pairs.add(pair)
                self.connections += 1
            for up in (True, False):
                threading.Thread(
                    target=self._pump, args=(pair, up), name="faultproxy-pump", daemon=True
                ).start()

    def _pump(self, pair: _Pair, up: bool) -> None:
        """Forward one direction of ``pair`` (``up``: client to server) as the mode says."""
        source, sink = (pair.client, pair.server) if up else (pair.server, pair.client)
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    return
                mode, delay = self._hold(pair)
                if pair.dead:
                    return
                if delay:
                    time.sleep(delay)
                if mode == _DROP_REPLIES and not up:
                    continue
                sink.sendall(data)
                if mode == _CUT and up:
                    with self._state:
                        self.faults += 1
                    return
        except OSError:
            return
        finally:
            pair.close()
            with self._state:
                self._pairs.discard(pair)

    def _hold(self, pair: _Pair) -> tuple[str, float]:
        """Wait while the proxy is a blackhole; the mode and delay to forward with."""
        with self._state:
            while self._mode == _BLACKHOLE and not self._closed and not pair.dead:
                self._state.wait(0.1)
            return self._mode, self._delay
