"""Connection bounds of `questlab serve`: no client holds a socket longer than the limits allow.

uvicorn (h11) on its own closes a connection only when it is idle *after* a response
(``timeout_keep_alive``): a socket that never sends anything, stops half-way through its request
headers, or never reads its response stays open for good, and a few hundred such sockets use up
the process's file descriptors ("Too many open files"), locking everyone else out.
:class:`GuardedH11Protocol` adds, per connection:

- idle: a connection with no request in progress (fresh, or kept alive after a response) is closed
  after ``keep_alive_s`` without a byte;
- headers: the request headers must be complete within ``header_timeout_s`` of their first byte
  (a 408, then closed);
- request: from its first byte to the last byte of its response, a request may take at most
  ``request_timeout_s`` (then the connection is dropped: a client that never reads its answer);
- connections: at most ``max_connections`` open at once, lowered to ``ulimit -n`` less 128 (the
  process's own files and one accept burst), so the server never runs out of descriptors. A
  connection over the cap makes room by closing the one that has gone longest without a request
  in progress (idle, or still sending its headers: a slowloris), so stalled sockets cannot lock
  newcomers out; only when every connection has a request running is the newcomer refused (a
  503, closed at once).

The request *body* is bounded by time and size in :class:`questlab.serve.limits.BodyLimit` (a 408
or a 413 with a one-line JSON reason), where a proper response can still be sent.
"""

from __future__ import annotations

import asyncio
import json
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_KEEP_ALIVE_S = 5.0
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_REQUEST_TIMEOUT_S = 120.0
DEFAULT_MAX_CONNECTIONS = 1000
FD_RESERVE = 64  # descriptors kept for the process itself (model files, logs, MLflow's SQLite)
# Listen backlog, which is also how many connections asyncio accepts in one go before any of them
# is seen (and closed) here: the connection cap keeps that many descriptors spare too.
ACCEPT_BACKLOG = 64


def fd_bounded(max_connections: int) -> int:
    """``max_connections``, lowered so that open connections cannot exhaust the descriptor limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - FD_RESERVE - ACCEPT_BACKLOG))


def _response(status: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection time bounds (seconds) and the cap on open connections (module doc)."""

    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if min(self.keep_alive_s, self.header_timeout_s, self.request_timeout_s) <= 0 or self.max_connections < 1:
            raise ValueError("connection timeouts must be positive and max_connections at least 1")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds of :class:`ConnectionLimits` (see the module doc)."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive_s  # type: ignore[assignment]
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_timer: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0  # loop time since which no request has been running

    @classmethod
    def bounded(cls, limits: ConnectionLimits) -> type[GuardedH11Protocol]:
        """This protocol with ``limits`` (the connection cap lowered to the descriptor limit)."""
        capped = ConnectionLimits(
            limits.keep_alive_s, limits.header_timeout_s, limits.request_timeout_s, fd_bounded(limits.max_connections)
        )
        return type(cls.__name__, (cls,), {"limits": capped})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        # Connections being closed still hold their descriptors: they count until they are gone.
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            transport.write(_response("503 Service Unavailable", "too many open connections: try again shortly"))
            transport.close()
            return
        # Idle before the first request too, not only between requests (uvicorn's own timer).
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self._request_timer is None and (self.cycle is None or self.cycle.response_complete):
            # The first byte of a request: its headers and the whole exchange are on the clock.
            self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)
            self._request_timer = self.loop.call_later(self.limits.request_timeout_s, self._request_too_slow)
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # the headers are in: a request is running
            self._cancel("_header_timer")

    def on_response_complete(self) -> None:
        self._cancel("_header_timer")
        self._cancel("_request_timer")
        self._waiting_since = self.loop.time()
        super().on_response_complete()

    def _running(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _evict_one(self) -> bool:
        """Close the open connection longest without a running request, if any (for a newcomer)."""
        waiting = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and not c._running() and not c.transport.is_closing()
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._waiting_since)
        if oldest._header_timer is not None:  # part-way through its headers
            oldest._headers_too_slow("connection closed to make room: request headers still incomplete")
        else:
            oldest.timeout_keep_alive_handler()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel("_header_timer")
        self._cancel("_request_timer")
        super().connection_lost(exc)

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _headers_too_slow(self, reason: str | None = None) -> None:
        self._cancel("_header_timer")
        if not self.transport.is_closing():
            reason = reason or f"request headers not complete within {self.limits.header_timeout_s:g} s"
            self.transport.write(_response("408 Request Timeout", reason))
            self.transport.close()

    def _request_too_slow(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.abort()  # maybe mid-response, to a client that does not read: no goodbye
