"""One keep-alive connection from the gateway to a backend.

An ``UpstreamConnection`` carries one exchange at a time; between exchanges it waits in its
``Upstream``'s idle pool. It parses responses with httptools and hands each event to its
exchange; bytes are forwarded as they arrive, so a body is never held whole in memory.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from kumo.platform.gateway.balancer import Upstream

if TYPE_CHECKING:
    from kumo.platform.gateway.proxy import Exchange, Proxy


class UpstreamProtocolError(Exception):
    """The upstream sent something that is not HTTP/1.1."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_headers",
        "closed",
        "exchange",
        "idle_since",
        "last_tick",
        "parser",
        "proxy",
        "reset_parser",
        "reused",
        "transport",
        "tunnel",
        "upstream",
    )

    def __init__(self, proxy: Proxy, upstream: Upstream) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.reused = False
        self.tunnel = False
        self.reset_parser = False
        self.idle_since = 0.0
        self.last_tick = proxy.tick
        self._headers: list[tuple[bytes, bytes]] = []

    def __repr__(self) -> str:
        return f"UpstreamConnection({self.upstream.address})"

    # ---- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.proxy.metrics.upstream_connections += 1

    def data_received(self, data: bytes) -> None:
        self.last_tick = self.proxy.tick
        exchange = self.exchange
        if exchange is None:
            # Bytes nobody asked for on an idle connection: it cannot be trusted any more.
            self.close()
            return
        if self.tunnel:
            exchange.client.transport.write(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            if rest and self.tunnel and self.exchange is not None:
                self.exchange.client.transport.write(rest)
        except httptools.HttpParserError as exc:
            current = self.exchange
            self.close()
            if current is not None:
                self.exchange = None
                current.upstream_lost(self, UpstreamProtocolError(str(exc) or type(exc).__name__))
            return
        if self.reset_parser:
            self.reset_parser = False
            self.parser = httptools.HttpResponseParser(self)
        exchange = self.exchange
        if exchange is not None and exchange.response_head_bytes is not None:
            exchange.flush_response_head()

    def eof_received(self) -> bool | None:
        exchange = self.exchange
        if exchange is not None and exchange.until_close and exchange.response_started:
            # A response without Content-Length or chunking ends when the upstream closes.
            exchange.response_complete(self, reusable=False)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
        self.proxy.metrics.upstream_connections -= 1
        exchange = self.exchange
        if self.tunnel:
            self.exchange = None
            if exchange is not None:
                exchange.client.close()
            return
        if exchange is not None:
            self.exchange = None
            exchange.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.client.pause_reading(BACKPRESSURE)

    def resume_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.client.resume_reading(BACKPRESSURE)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            transport = self.transport
            if transport is not None:
                transport.close()

    def abort(self) -> None:
        self.closed = True
        transport = self.transport
        if transport is not None:
            transport.abort()

    # ---- httptools callbacks ------------------------------------------------------------

    # (No on_status: responses carry the standard reason phrase of their code. No
    # on_message_begin: the header list is replaced when a response's headers end.)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        headers, self._headers = self._headers, []
        exchange = self.exchange
        if exchange is not None:
            exchange.response_head(self, self.parser.get_status_code(), headers)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.response_body(body)

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.response_complete(self, reusable=self.parser.should_keep_alive())


# Why a client connection stops reading (a bit mask, see ClientConnection.pause_reading).
BUFFERED = 1  # the request body waits for an upstream connection and its buffer is full
BACKPRESSURE = 2  # the upstream does not take the request body as fast as it comes
PIPELINED = 4  # a further request arrived before the current one was answered
UPGRADING = 8  # an Upgrade request waits for the upstream's 101
