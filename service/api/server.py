"""Running the app under uvicorn: a header-read timeout, keep-alive timeout, logging with request ids."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

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
    """uvicorn's h11 protocol, closing a connection whose first request headers take over `seconds`.

    uvicorn arms its keep-alive timer only after a response, and disarms it once
    a request's headers are parsed; arming it when the connection opens too
    bounds the time a client may take to send its headers (slow-header clients).
    """

    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.timeout_keep_alive_task = self.loop.call_later(seconds, self.timeout_keep_alive_handler)

    return HeaderTimeoutProtocol


def server_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_with_header_timeout(settings.header_timeout),
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        log_config=logging_config(settings.log_format),
        access_log=False,
        server_header=False,
    )


def run(app: Any, settings: Settings, *, host: str, port: int) -> None:
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()
