"""Running the app under uvicorn: a header-read timeout, keep-alive timeout, logging with request ids."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Settings
from .observability import logging_config


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def protocol_with_header_timeout(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers take over `seconds`.

    uvicorn itself only times out idle kept-alive connections (and any byte
    received disarms that), so a client trickling its headers would hold a
    connection forever. The deadline is armed when the connection opens and
    after each response, and disarmed once a request's headers are complete.

    It also turns Nagle's algorithm off for each connection. asyncio does that
    only for sockets created with proto=IPPROTO_TCP, not for those accepted from
    a listening socket made with `socket.socket(family, SOCK_STREAM)` (proto 0),
    as `iorag serve` makes its own; with Nagle on, a response body written after
    its headers waited for the client's delayed ACK, about 40 ms per request.
    """

    class HeaderTimeoutProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._headers_too_slow)

        def _headers_too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self._deadline is not None and self.conn.their_state is not h11.IDLE:
                self._deadline.cancel()
                self._deadline = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def server_config(app: Any, settings: Settings, *, host: str, port: int, own_logging: bool = True) -> uvicorn.Config:
    """uvicorn's config for `iorag serve`; `own_logging=False` leaves the process's logging as it is."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_with_header_timeout(settings.header_timeout),
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        log_config=logging_config(settings.log_format) if own_logging else None,
        access_log=False,
        server_header=False,
    )


def run(app: Any, settings: Settings, *, host: str, port: int, sock: socket.socket | None = None) -> bool:
    """Serve until stopped, on `sock` when given (already bound to host:port); False if it never started."""
    server = uvicorn.Server(server_config(app, settings, host=host, port=port))
    server.run(sockets=[sock] if sock is not None else None)
    return bool(server.started)
