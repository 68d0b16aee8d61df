"""The proxy engine: client connections, exchanges (one request and its response), retries,
ejection, timeouts and the cold-start hold.

How a request travels:
1. ``ClientConnection`` parses it with httptools; at the end of its headers an ``Exchange``
   is created and, once every earlier request on the connection is answered, begun.
2. ``Exchange.begin`` resolves the target (Host header or path), picks an upstream with the
   Service's balancer and takes an idle pooled connection (or opens one in a task), then
   writes the request head and whatever body has arrived; the rest of the body is written as
   it is parsed. Both directions honour flow control: a full write buffer on one side pauses
   reading on the other, so memory stays bounded whatever the body size.
3. The upstream's response is forwarded as it is parsed; at its end the upstream connection
   goes back to the pool and the next pipelined request (if any) begins.

Failure rules (what clients may rely on):
- a connection that cannot be opened (refused, reset, timed out) ejects that upstream and the
  request is retried elsewhere whatever its method: nothing was sent;
- an upstream that drops the connection before answering: idempotent requests (GET, HEAD,
  OPTIONS, PUT, DELETE, TRACE) whose body is still held (up to ``retry_buffer_bytes``) are
  retried; others get 502. A fresh connection dropped this way also ejects the upstream;
- at most ``max_retries`` retries; then 502 naming the upstream and the error;
- no response headers within the request timeout after the request was sent: 504;
- once response bytes went to the client nothing is retried; a broken response is cut off
  (the client sees the connection close before the announced end).

The request path is written for speed (it is most of the gateway's CPU): per-request state
lives in one ``Exchange`` with slots, header names are classified through a cache instead of
being lower-cased, and a response head plus its first body bytes go out in one write.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from time import monotonic
from typing import TYPE_CHECKING, cast

import httptools

from kumo.platform.gateway.activator import Activator, FunctionNotFound, function_service_name
from kumo.platform.gateway.balancer import Upstream
from kumo.platform.gateway.metrics import GatewayMetrics, ServiceStats
from kumo.platform.gateway.options import GatewayOptions
from kumo.platform.gateway.routing import (
    FUNCTION,
    PortRoute,
    RouteTable,
    ServiceRoute,
    parse_path_prefix,
    path_prefix_end,
    service_from_host,
    upstream_path,
)
from kumo.platform.gateway.upstream import (
    BACKPRESSURE,
    BUFFERED,
    PIPELINED,
    UPGRADING,
    UpstreamConnection,
)
from kumo.platform.gateway.wire import (
    ACCEPT,
    CONNECTION,
    CONTENT_LENGTH,
    FORWARDED_FOR,
    HEADER_KINDS,
    HOP,
    HOST,
    IDEMPOTENT_METHODS,
    NORMAL,
    STATUS_LINES,
    TRANSFER_ENCODING,
    UPGRADE,
    connection_tokens,
    error_response,
    header_kind,
    status_line_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499
# How long the rest of a request body is read and dropped after its answer went out.
LINGER_SECONDS = 5.0
_CRLF = b"\r\n"
_COLON = b": "
_MISSING = ("", "")
_PASSED_CONNECTION_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})


class Proxy:
    """State shared by every connection of one gateway."""

    def __init__(
        self,
        options: GatewayOptions,
        table: RouteTable[ServiceStats],
        metrics: GatewayMetrics,
        activator: Activator | None = None,
    ) -> None:
        self.options = options
        self.table = table
        self.metrics = metrics
        self.activator = activator
        self.loop = asyncio.get_running_loop()
        self.clients: set[ClientConnection] = set()
        self.tick = 0
        self.synced = False
        self.host_cache: dict[bytes, tuple[str, str] | None] = {}
        self.prefix_cache: dict[bytes, tuple[int, str, str, str | None] | None] = {}

    def connection_factory(self) -> Callable[[], ClientConnection]:
        return lambda: ClientConnection(self)

    # ---- addressing (cached: a gateway sees the same few hosts and prefixes again and again)

    def host_service(self, host: bytes) -> tuple[str, str] | None:
        found = service_from_host(host.decode("latin-1"), self.options.domains)
        if len(self.host_cache) > 4096:
            self.host_cache.clear()
        self.host_cache[host] = found
        return found

    def path_target(self, prefix: bytes) -> tuple[int, str, str, str | None] | None:
        found = self.prefix_cache.get(prefix, _MISSING)
        if found is not _MISSING:
            return cast("tuple[int, str, str, str | None] | None", found)
        parsed = parse_path_prefix(prefix)
        if len(self.prefix_cache) > 4096:
            self.prefix_cache.clear()
        self.prefix_cache[prefix] = parsed
        return parsed

    # ---- housekeeping ---------------------------------------------------------------------

    def sweep(self) -> None:
        """Called every ``options.tick`` seconds: timeouts and idle connections."""
        self.tick += 1
        now = monotonic()
        for client in list(self.clients):
            client.check(now, self.tick)

    def sweep_pools(self) -> None:
        limit = monotonic() - self.options.upstream_idle_timeout
        for upstream in self.table.upstreams:
            idle = upstream.idle
            stale = 0
            while stale < len(idle) and idle[stale].idle_since < limit:
                stale += 1
            if stale:
                old, upstream.idle = idle[:stale], idle[stale:]
                for conn in old:
                    conn.close()


class ClientConnection(asyncio.Protocol):
    """One connection from a client; parses requests and writes responses in order."""

    __slots__ = (
        "_accept_json",
        "_advancing",
        "_block",
        "_connection",
        "_forwarded_for",
        "_header_bytes",
        "_headers_started",
        "_host",
        "_max_header_bytes",
        "_request_chunked",
        "_request_length",
        "_upgrade",
        "_url",
        "closing",
        "last_tick",
        "lingering_since",
        "parser",
        "parsing",
        "paused",
        "peer",
        "proxy",
        "queue",
        "transport",
        "tunnel",
        "writing_paused",
    )

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[Exchange] = collections.deque()
        self.parsing: Exchange | None = None
        self.paused = 0
        self.writing_paused = False
        self.closing = False
        self.tunnel: UpstreamConnection | None = None
        self.peer = b""
        self.last_tick = proxy.tick
        self.lingering_since = -1
        self._advancing = False
        self._max_header_bytes = proxy.options.max_header_bytes
        self._headers_started = -1
        self._url = b""
        # the request's headers as they will be forwarded: name, ": ", value, CRLF groups
        self._block: list[bytes] = []
        self._host: bytes | None = None
        self._connection: bytes | None = None
        self._forwarded_for: bytes | None = None
        self._upgrade: bytes | None = None
        self._accept_json = False
        self._request_chunked = False
        self._request_length: bytes | None = None
        self._header_bytes = 0

    # ---- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0]).encode()
        self.transport.set_write_buffer_limits(high=256 * 1024)
        self.proxy.clients.add(self)
        self.proxy.metrics.client_connections += 1

    def data_received(self, data: bytes) -> None:
        self.last_tick = self.proxy.tick
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.transport.write(data)
            return
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            exchange = self.parsing
            if exchange is not None and exchange.upgrade is not None and not exchange.done:
                self.pause_reading(UPGRADING)
                rest = data[upgrade.args[0] :]
                if rest:
                    exchange.tunnel_bytes(rest)
            elif exchange is None or not exchange.done:
                self._bad_request(400, "bad request: unexpected protocol upgrade", "bad-request")
        except httptools.HttpParserError as exc:
            if self._header_bytes > self._max_header_bytes:
                self._bad_request(
                    431,
                    f"request headers larger than {self._max_header_bytes} bytes",
                    "headers-too-large",
                )
            else:
                message = str(exc) or type(exc).__name__
                self._bad_request(400, f"bad request: {message}", "bad-request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.proxy.clients.discard(self)
        self.proxy.metrics.client_connections -= 1
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.close()
        while self.queue:
            self.queue.popleft().client_gone()

    def pause_writing(self) -> None:
        self.writing_paused = True
        conn = self._responding_upstream()
        if conn is not None:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        conn = self._responding_upstream()
        if conn is not None and not conn.closed:
            conn.transport.resume_reading()

    def _responding_upstream(self) -> UpstreamConnection | None:
        if self.tunnel is not None:
            return self.tunnel
        if self.queue:
            return self.queue[0].conn
        return None

    # ---- reading control ------------------------------------------------------------------

    def pause_reading(self, reason: int) -> None:
        if not self.paused and not self.closing:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and not self.closing:
            self.transport.resume_reading()

    # ---- httptools callbacks ------------------------------------------------------------

    # (No on_message_begin: the per-request state is reset when a request's headers end.)

    def on_url(self, url: bytes) -> None:
        if self._url:
            self._url += url
        else:
            self._url = url
            self._headers_started = self.proxy.tick
        self._header_bytes += len(url)
        if self._header_bytes > self._max_header_bytes:
            raise ValueError("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._max_header_bytes:
            raise ValueError("request headers too large")
        kind = HEADER_KINDS.get(name)
        if kind is None:
            kind = header_kind(name)
        if kind == NORMAL:
            self._block.extend((name, _COLON, value, _CRLF))
        elif kind == HOST:
            self._host = value
            self._block.extend((name, _COLON, value, _CRLF))
        elif kind == CONTENT_LENGTH:
            self._request_length = value.strip()
            self._block.extend((name, _COLON, value, _CRLF))
        elif kind == ACCEPT:
            self._accept_json = b"json" in value
            self._block.extend((name, _COLON, value, _CRLF))
        elif kind == TRANSFER_ENCODING:
            self._request_chunked = b"chunked" in value.lower()
        elif kind == CONNECTION:
            previous = self._connection
            self._connection = value if previous is None else previous + b", " + value
        elif kind == FORWARDED_FOR:
            previous = self._forwarded_for
            self._forwarded_for = value if previous is None else previous + b", " + value
        elif kind == UPGRADE:
            self._upgrade = value
        # other hop-by-hop headers and the client's other X-Forwarded-* are not forwarded

    def on_headers_complete(self) -> None:
        self._headers_started = -1
        parser = self.parser
        exchange = Exchange(
            self,
            parser.get_method(),
            self._url,
            self._block,
            self._host,
            http10=parser.get_http_version() == "1.0",
            connection=self._connection,
            keep_alive=parser.should_keep_alive(),
            upgrade=self._upgrade if parser.should_upgrade() else None,
            request_chunked=self._request_chunked,
            forwarded_for=self._forwarded_for,
            accept_json=self._accept_json,
        )
        if not self._request_chunked and self._request_length in (None, b"0"):
            # No body follows: the request is complete already, so an answer given right away
            # (a 404, say) need not close the connection.
            exchange.request_done = True
        self._url = b""
        self._block = []
        self._header_bytes = 0
        if self._host is not None:
            self._host = None
        if self._request_length is not None:
            self._request_length = None
        if self._connection is not None or self._forwarded_for is not None:
            self._connection = self._forwarded_for = None
        if self._upgrade is not None or self._accept_json or self._request_chunked:
            self._upgrade = None
            self._accept_json = self._request_chunked = False
        self.parsing = exchange
        queue = self.queue
        queue.append(exchange)
        if len(queue) == 1:
            exchange.begin()
        else:
            # Answer in order: this one waits until those before it are done, and reading
            # stops so that clients cannot queue without bound.
            self.pause_reading(PIPELINED)

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is not None:
            exchange.request_body(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is not None:
            exchange.request_complete()

    # ---- answering ------------------------------------------------------------------------

    def exchange_done(self, exchange: Exchange) -> None:
        """The response of the first queued exchange was written completely."""
        queue = self.queue
        if queue and queue[0] is exchange:
            queue.popleft()
        if self.parsing is exchange and exchange.request_done:
            self.parsing = None
        if self.closing:
            return
        if not exchange.request_done:
            # Answered before the client finished sending (an error, or an upstream that
            # answered early). Closing now could make the kernel reset the connection and the
            # client lose the answer: read on and drop the rest of the body first, for a while.
            exchange.discard = True
            self.lingering_since = self.proxy.tick
            self.resume_reading(BUFFERED | BACKPRESSURE | PIPELINED)
            return
        if not exchange.keep_alive:
            self.close()
            return
        if self._advancing:
            return  # the loop below, further up the stack, begins the next one
        if queue:
            # Pipelined requests answered at once (errors) must not recurse once per request.
            self._advancing = True
            try:
                while queue and not self.closing:
                    first = queue[0]
                    first.begin()
                    if queue and queue[0] is first:
                        break
            finally:
                self._advancing = False
        if len(queue) <= 1 and self.paused & PIPELINED:
            self.resume_reading(PIPELINED)

    def close(self) -> None:
        """Close once everything written so far has been sent."""
        if not self.closing:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        self.transport.abort()

    def _bad_request(self, code: int, message: str, kind: str) -> None:
        self.closing = True
        if not self.queue or not self.queue[0].response_started:
            self.transport.write(error_response(code, message, kind, keep_alive=False))
        self.transport.close()

    def check(self, now: float, tick: int) -> None:
        """Timeouts; called by the proxy's sweeper."""
        if self.closing or self.tunnel is not None:
            return
        options = self.proxy.options
        per_tick = options.tick
        if self.lingering_since >= 0:
            if (tick - self.lingering_since) * per_tick >= LINGER_SECONDS:
                self.close()
            return
        if not self.queue:
            if self._headers_started >= 0:
                if (tick - self._headers_started) * per_tick >= options.client_idle_timeout:
                    self._bad_request(408, "timed out reading the request headers", "timeout")
            elif (tick - self.last_tick) * per_tick >= options.client_idle_timeout:
                self.close()
            return
        exchange = self.queue[0]
        if exchange.deadline and now >= exchange.deadline:
            exchange.timed_out()
            return
        conn = exchange.conn
        if conn is not None and not exchange.deadline:
            last = max(self.last_tick, conn.last_tick)
            if (tick - last) * per_tick >= options.stream_idle_timeout:
                exchange.stream_idle()


class Exchange:
    """One request and its response, across retries."""

    __slots__ = (
        "accept_json",
        "attempts",
        "block",
        "body_size",
        "buffered",
        "chunk_out",
        "client",
        "conn",
        "connection",
        "deadline",
        "discard",
        "done",
        "forwarded_for",
        "head",
        "host",
        "http10",
        "interim",
        "keep_alive",
        "last_error",
        "method",
        "port_route",
        "request_chunked",
        "request_done",
        "response_head_bytes",
        "response_started",
        "route",
        "start",
        "stats",
        "status",
        "task",
        "tried",
        "unsent",
        "unsent_size",
        "until_close",
        "upgrade",
        "upstream",
        "url",
    )

    def __init__(
        self,
        client: ClientConnection,
        method: bytes,
        url: bytes,
        block: list[bytes],
        host: bytes | None,
        *,
        http10: bool,
        connection: bytes | None,
        keep_alive: bool,
        upgrade: bytes | None,
        request_chunked: bool,
        forwarded_for: bytes | None,
        accept_json: bool,
    ) -> None:
        self.client = client
        self.method = method
        self.url = url
        self.block = block
        self.host = host
        self.forwarded_for = forwarded_for
        self.accept_json = accept_json
        self.http10 = http10
        self.connection = connection
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.request_chunked = request_chunked
        self.start = monotonic()
        stats = self.stats = client.proxy.metrics.unrouted
        stats.in_flight += 1
        self.route: ServiceRoute[ServiceStats] | None = None
        self.port_route: PortRoute | None = None
        self.upstream: Upstream | None = None
        self.conn: UpstreamConnection | None = None
        self.task: asyncio.Task[None] | None = None
        self.head = b""
        self.status = 0
        self.attempts = 0
        self.tried: set[Upstream] | None = None
        self.last_error = ""
        self.deadline = 0.0
        # Request body: ``unsent`` waits for a connection; ``buffered`` keeps every byte so
        # far for a retry, until it outgrows the retry buffer (then None: no more retries).
        self.unsent: list[bytes] | None = None
        self.unsent_size = 0
        self.buffered: list[bytes] | None = []
        self.body_size = 0
        self.request_done = False
        self.discard = False
        self.response_started = False
        self.response_head_bytes: bytes | None = None
        self.chunk_out = False
        self.until_close = False
        self.interim = False
        self.done = False

    def __repr__(self) -> str:
        return f"Exchange({self.method.decode()} {self.url!r})"

    # ---- starting ---------------------------------------------------------------------------

    def begin(self) -> None:
        """Route the request; called once it is first in its connection's queue."""
        proxy = self.client.proxy
        if not proxy.synced:
            self.fail(
                503,
                "the gateway has not loaded its routes from the API server yet; retry shortly",
                "not-ready",
            )
            return
        if self.method == b"CONNECT":
            self.fail(405, "CONNECT is not supported by the gateway", "method-not-allowed")
            return
        routes = proxy.table.routes
        url = self.url
        host = self.host
        named: tuple[str, str] | None = None
        if host is not None:
            named = proxy.host_cache.get(host, _MISSING)
            if named is _MISSING:
                named = proxy.host_service(host)
            if named is not None:
                route = routes.get(named)
                if route is not None:
                    self._route(route, None, url, None)
                    return
        end = path_prefix_end(url)
        if end >= 0:
            prefix = url[:end]
            parsed = proxy.path_target(prefix)
            if parsed is not None:
                kind, namespace, name, port = parsed
                if kind == FUNCTION:
                    name = function_service_name(name)
                route = routes.get((namespace, name))
                path = upstream_path(url, end)
                if kind == FUNCTION and (route is None or not route.ready):
                    self._count_as(proxy.metrics.stats_for(namespace, name))
                    self.task = proxy.loop.create_task(
                        self._cold_start(namespace, name, path, prefix)
                    )
                    return
                if route is None:
                    self.fail(404, f"service {namespace}/{name} not found", "not-found")
                    return
                self._route(route, port, path, prefix)
                return
        if named is not None:
            self.fail(404, f"service {named[0]}/{named[1]} not found", "not-found")
            return
        self.fail(
            404,
            "no service addressed: use http://<service>.<namespace>.localhost:<port>/... "
            "or the path /s/<namespace>/<service>/...",
            "no-route",
        )

    def _count_as(self, stats: ServiceStats) -> None:
        self.stats.in_flight -= 1
        self.stats = stats
        stats.in_flight += 1

    def _route(
        self,
        route: ServiceRoute[ServiceStats],
        port: str | None,
        path: bytes,
        prefix: bytes | None,
    ) -> None:
        stats = route.stats
        if stats is not self.stats:
            self.stats.in_flight -= 1
            self.stats = stats
            stats.in_flight += 1
        port_route = route.default if port is None else route.select_port(port)
        if port_route is None:
            ports = ", ".join(p.describe() for p in route.ports) or "none"
            if port is None:
                message = f"service {route.display} has no ports"
            else:
                message = f"service {route.display} has no port {port} (ports: {ports})"
            self.fail(404, message, "no-such-port")
            return
        if not port_route.balancer.upstreams:
            message = f"no ready endpoints for service {route.display}"
            if route.note:
                message += f" ({route.note})"
            self.fail(503, message, "no-ready-endpoints")
            return
        self.route = route
        self.port_route = port_route
        self.head = self._request_head(path, prefix, route)
        self.attempts = 1
        self._dispatch(self.start)

    def _request_head(
        self, path: bytes, prefix: bytes | None, route: ServiceRoute[ServiceStats]
    ) -> bytes:
        parts = [self.method, b" ", path, b" HTTP/1.1\r\n"]
        block = self.block
        if self.connection is not None:
            dropped = connection_tokens(self.connection) - _PASSED_CONNECTION_TOKENS
            if dropped:
                block = _without_headers(block, dropped)
        parts += block
        extend = parts.extend
        peer = self.client.peer
        if self.host is None:
            extend((b"Host: ", route.name.encode(), b".", route.namespace.encode(), b".svc\r\n"))
        else:
            extend((b"X-Forwarded-Host: ", self.host, _CRLF))
        forwarded_for = self.forwarded_for
        if forwarded_for is None:
            extend((b"X-Forwarded-For: ", peer, b"\r\nX-Forwarded-Proto: http\r\n"))
        else:
            extend(
                (
                    b"X-Forwarded-For: ",
                    forwarded_for,
                    b", ",
                    peer,
                    b"\r\nX-Forwarded-Proto: http\r\n",
                )
            )
        if prefix is not None:
            extend((b"X-Forwarded-Prefix: ", prefix, _CRLF))
        if self.upgrade is not None:
            extend((b"Upgrade: ", self.upgrade, b"\r\nConnection: Upgrade\r\n"))
        if self.request_chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(_CRLF)
        return b"".join(parts)

    async def _cold_start(self, namespace: str, name: str, path: bytes, prefix: bytes) -> None:
        proxy = self.client.proxy
        display = f"{namespace}/{name}"
        timeout = proxy.options.cold_start_timeout
        self.stats.cold_starts += 1
        try:
            async with asyncio.timeout(timeout):
                if proxy.activator is None:
                    raise FunctionNotFound(display)
                await proxy.activator.activate(namespace, name)
                route = await proxy.table.wait_ready(namespace, name)
        except FunctionNotFound:
            self.task = None
            self._count_as(proxy.metrics.unrouted)
            self.fail(404, f"function {display} not found", "not-found")
            return
        except TimeoutError:
            self.task = None
            self.fail(
                504,
                f"function {display} has no ready pod after waiting {timeout:g}s (cold start)",
                "cold-start-timeout",
            )
            return
        except Exception as exc:
            self.task = None
            log.warning("activating function %s failed: %s", display, exc)
            self.fail(503, f"could not activate function {display}: {exc}", "activation-failed")
            return
        self.task = None
        if self.done:
            return
        self._route(route, None, path, prefix)

    # ---- sending ------------------------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        port_route = self.port_route
        assert port_route is not None
        upstream = port_route.balancer.pick(now, self.tried)
        if upstream is None:
            self.fail(
                502,
                f"every endpoint of service {self._display()} failed: {self.last_error}",
                "upstream-failed",
            )
            return
        self.upstream = upstream
        upstream.outstanding += 1
        conn = upstream.take_idle()
        if conn is not None:
            conn.reused = True
            self._attach(conn, now)
        else:
            self.task = self.client.proxy.loop.create_task(self._connect(upstream))

    async def _connect(self, upstream: Upstream) -> None:
        proxy = self.client.proxy
        try:
            async with asyncio.timeout(proxy.options.connect_timeout):
                _, conn = await proxy.loop.create_connection(
                    lambda: UpstreamConnection(proxy, upstream), upstream.host, upstream.port
                )
        except asyncio.CancelledError:
            upstream.outstanding -= 1
            raise
        except (OSError, TimeoutError) as exc:
            self.task = None
            proxy.metrics.upstream_connect_failures += 1
            if isinstance(exc, TimeoutError):
                reason = f"connect timed out after {proxy.options.connect_timeout:g}s"
            else:
                reason = _describe(exc)
            self._connect_failed(upstream, reason)
            return
        self.task = None
        proxy.metrics.upstream_connects += 1
        if self.done:
            upstream.outstanding -= 1
            release(conn, proxy)
            return
        self._attach(conn, monotonic())

    def _attach(self, conn: UpstreamConnection, now: float) -> None:
        self.conn = conn
        conn.exchange = self
        client = self.client
        if client.writing_paused:
            conn.transport.pause_reading()
        unsent = self.unsent
        if unsent:
            conn.transport.writelines([self.head, *unsent])
            self.unsent = None
            self.unsent_size = 0
            client.resume_reading(BUFFERED)
        else:
            conn.transport.write(self.head)
        if self.request_done and not self.response_started:
            route = self.route
            assert route is not None
            self.deadline = now + route.request_timeout

    def request_body(self, chunk: bytes) -> None:
        if self.discard or not chunk:
            return
        if self.request_chunked:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        self._forward(chunk)

    def tunnel_bytes(self, data: bytes) -> None:
        """Bytes a client sent after an Upgrade request, before the upstream agreed."""
        self.buffered = None
        self._forward(data)

    def _forward(self, data: bytes) -> None:
        limit = self.client.proxy.options.retry_buffer_bytes
        buffered = self.buffered
        if buffered is not None:
            self.body_size += len(data)
            if self.body_size > limit:
                self.buffered = None
            else:
                buffered.append(data)
        conn = self.conn
        if conn is not None:
            conn.transport.write(data)
            return
        if self.unsent is None:
            self.unsent = [data]
        else:
            self.unsent.append(data)
        self.unsent_size += len(data)
        if self.unsent_size >= limit:
            self.client.pause_reading(BUFFERED)

    def request_complete(self) -> None:
        if self.request_done:
            return
        self.request_done = True
        if self.discard:
            if self.done:
                self.client.close()  # it was lingering for this: the body is all read now
            return
        if self.request_chunked:
            self._forward(b"0\r\n\r\n")
        if self.conn is not None and not self.response_started:
            route = self.route
            assert route is not None
            self.deadline = monotonic() + route.request_timeout

    # ---- failures before the response -------------------------------------------------------

    def _connect_failed(self, upstream: Upstream, reason: str) -> None:
        upstream.outstanding -= 1
        if self.done:
            return
        self._eject(upstream)
        self.last_error = f"{upstream.address}: {reason}"
        # Nothing was sent on this connection, so any request may go elsewhere.
        self._retry_or_fail(
            upstream,
            f"could not connect to {upstream.address} for service {self._display()}: {reason}",
        )

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        """The upstream connection closed (or broke) while this exchange used it."""
        if conn is not self.conn:
            return
        self.conn = None
        upstream = conn.upstream
        upstream.outstanding -= 1
        if self.done:
            return
        if self.response_started:
            self._cut_off()
            return
        self.deadline = 0.0
        reason = _describe(exc)
        self.last_error = f"{upstream.address}: {reason}"
        if conn.reused:
            # Probably a pooled connection the upstream had already closed (it restarted,
            # or timed the connection out); its other idle connections are suspect too.
            upstream.close_idle()
        else:
            self._eject(upstream)
        message = (
            f"upstream {upstream.address} of service {self._display()} closed the connection "
            f"before answering: {reason}"
        )
        if self.method in IDEMPOTENT_METHODS and self.buffered is not None and not self.interim:
            self.unsent = list(self.buffered)
            self.unsent_size = self.body_size
            self._retry_or_fail(None if conn.reused else upstream, message)
            return
        self.fail(502, message, "upstream-failed")

    def _eject(self, upstream: Upstream) -> None:
        options = self.client.proxy.options
        duration = upstream.eject(monotonic(), options.ejection_base, options.ejection_max)
        self.stats.ejections += 1
        log.info(
            "ejected upstream %s of service %s for %.1fs",
            upstream.address,
            self._display(),
            duration,
        )

    def _retry_or_fail(self, failed: Upstream | None, message: str) -> None:
        if failed is not None:
            if self.tried is None:
                self.tried = set()
            self.tried.add(failed)
        if self.attempts > self.client.proxy.options.max_retries:
            self.fail(502, message, "upstream-failed")
            return
        self.attempts += 1
        self.stats.retries += 1
        self.upstream = None
        self._dispatch(monotonic())

    def timed_out(self) -> None:
        self.deadline = 0.0
        route = self.route
        timeout = route.request_timeout if route is not None else 0.0
        upstream = self.upstream
        self.fail(
            504,
            f"upstream {upstream.address if upstream else '?'} of service {self._display()} "
            f"did not answer within {timeout:g}s",
            "timeout",
        )

    def stream_idle(self) -> None:
        if self.response_started:
            self._drop_upstream()
            self._cut_off()
            return
        self.fail(
            504,
            f"no data moved for {self.client.proxy.options.stream_idle_timeout:g}s "
            f"while proxying to service {self._display()}",
            "timeout",
        )

    def _display(self) -> str:
        route = self.route
        return route.display if route is not None else "?"

    def _drop_upstream(self) -> None:
        """Close the upstream connection in use (its response is no longer wanted)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.exchange = None
            conn.abort()
            conn.upstream.outstanding -= 1

    def fail(self, code: int, message: str, kind: str) -> None:
        """Answer with the gateway's own error (or cut the response off, if one started)."""
        if self.done:
            return
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._drop_upstream()
        if self.response_started:
            self._cut_off()
            return
        self.status = code
        self.discard = True
        client = self.client
        keep_alive = self.keep_alive and self.request_done and self.upgrade is None
        self.keep_alive = keep_alive
        if not client.closing:
            client.transport.write(
                error_response(
                    code,
                    message,
                    kind,
                    json_body=self.accept_json,
                    keep_alive=keep_alive,
                    http10=self.http10,
                    head_only=self.method == b"HEAD",
                )
            )
        self._finish()

    def _cut_off(self) -> None:
        self.keep_alive = False
        self.client.abort()
        self._finish()

    def client_gone(self) -> None:
        """The client disconnected; stop everything this exchange started."""
        if self.done:
            return
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._drop_upstream()
        if not self.response_started or not self.status:
            self.status = CLIENT_CLOSED
        self.done = True
        self._record()

    # ---- the response -------------------------------------------------------------------------

    def response_head(
        self,
        conn: UpstreamConnection,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        status_line = STATUS_LINES.get(status)
        if status_line is None:
            status_line = status_line_for(status)
        if status < 200 and status != 101:
            self.interim = True
            if not self.http10:
                self.client.transport.write(status_line + _CRLF)
            return
        self.deadline = 0.0
        self.response_started = True
        self.status = status
        keep_alive = self.keep_alive
        length: bytes | None = None
        chunked = False
        tokens: set[bytes] | None = None
        parts = [status_line]
        extend = parts.extend
        for name, value in headers:
            kind = HEADER_KINDS.get(name)
            if kind is None:
                kind = header_kind(name)
            if kind == NORMAL:
                extend((name, _COLON, value, _CRLF))
            elif kind == CONTENT_LENGTH:
                length = value
                extend((name, _COLON, value, _CRLF))
            elif kind == TRANSFER_ENCODING:
                chunked = b"chunked" in value.lower()
            elif kind == CONNECTION:
                tokens = connection_tokens(value) - _PASSED_CONNECTION_TOKENS
            elif kind == UPGRADE:
                if status == 101:
                    extend((name, _COLON, value, _CRLF))
            elif kind != HOP:
                extend((name, _COLON, value, _CRLF))
        if tokens:
            parts = [parts[0], *_without_headers(parts[1:], tokens)]
        if self.upgrade is not None and status != 101:
            # the client's side of the connection is in the upgraded state already
            keep_alive = False
        if status == 101:
            parts.append(b"Connection: Upgrade\r\n")
        elif self.method == b"HEAD" or status == 204 or status == 304:
            pass
        elif length is None:
            if self.http10:
                # An HTTP/1.0 client learns the end of the body from the connection closing.
                keep_alive = False
            else:
                self.chunk_out = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
            self.until_close = not chunked
        if status != 101:
            if not keep_alive:
                parts.append(b"Connection: close\r\n")
            elif self.http10:
                parts.append(b"Connection: keep-alive\r\n")
        self.keep_alive = keep_alive
        parts.append(_CRLF)
        self.response_head_bytes = b"".join(parts)
        if self.method == b"HEAD" and status != 101:
            # llhttp would wait for the body a Content-Length announces; a HEAD has none.
            conn.reset_parser = True
            self.response_complete(conn, reusable=conn.parser.should_keep_alive())

    def flush_response_head(self) -> None:
        head = self.response_head_bytes
        if head is not None:
            self.response_head_bytes = None
            self.client.transport.write(head)

    def response_body(self, body: bytes) -> None:
        if not body or self.done:
            return
        if self.chunk_out:
            body = b"%x\r\n%s\r\n" % (len(body), body)
        head = self.response_head_bytes
        if head is not None:
            self.response_head_bytes = None
            self.client.transport.write(head + body)
        else:
            self.client.transport.write(body)

    def response_complete(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        if self.interim:
            self.interim = False
            return
        if self.done:
            return
        client = self.client
        head = self.response_head_bytes
        if self.chunk_out:
            client.transport.write(b"0\r\n\r\n" if head is None else head + b"0\r\n\r\n")
        elif head is not None:
            client.transport.write(head)
        self.response_head_bytes = None
        self.conn = None
        upstream = conn.upstream
        upstream.outstanding -= 1
        if upstream.ejections:
            upstream.ejections = 0
        if self.status == 101:
            self._start_tunnel(conn)
            return
        conn.exchange = None
        proxy = client.proxy
        if (
            reusable
            and self.request_done
            and not self.until_close
            and not conn.closed
            and not upstream.retired
            and len(upstream.idle) < proxy.options.max_idle_per_upstream
        ):
            now = monotonic()
            conn.idle_since = now
            if client.writing_paused:
                conn.transport.resume_reading()
            upstream.idle.append(conn)
        else:
            now = monotonic()
            conn.close()
        self.done = True
        stats = self.stats
        stats.in_flight -= 1
        stats.observe(self.method, self.status, now - self.start)
        if client.paused:
            client.resume_reading(BACKPRESSURE | BUFFERED)
        client.exchange_done(self)

    def _start_tunnel(self, conn: UpstreamConnection) -> None:
        client = self.client
        conn.tunnel = True
        client.tunnel = conn
        self.keep_alive = False
        self.done = True
        self._record()
        if client.queue and client.queue[0] is self:
            client.queue.popleft()
        client.resume_reading(UPGRADING | BACKPRESSURE | BUFFERED)

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        self._record()
        client = self.client
        if client.paused:
            client.resume_reading(BACKPRESSURE | BUFFERED)
        client.exchange_done(self)

    def _record(self) -> None:
        stats = self.stats
        stats.in_flight -= 1
        stats.observe(self.method, self.status, monotonic() - self.start)


def _without_headers(block: list[bytes], names: set[bytes]) -> list[bytes]:
    """``block`` (name, ": ", value, CRLF groups) minus the named headers: those a Connection
    header declared hop-by-hop."""
    kept: list[bytes] = []
    for index in range(0, len(block) - 3, 4):
        if block[index].lower() not in names:
            kept.extend(block[index : index + 4])
    return kept


def release(conn: UpstreamConnection, proxy: Proxy) -> None:
    """Put an upstream connection back in its pool (or close it if it cannot be reused)."""
    upstream = conn.upstream
    if conn.closed or upstream.retired or len(upstream.idle) >= proxy.options.max_idle_per_upstream:
        conn.close()
        return
    conn.idle_since = monotonic()
    transport = conn.transport
    if not transport.is_reading():
        transport.resume_reading()
    upstream.idle.append(conn)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "connection closed"
    if isinstance(exc, OSError):
        if exc.errno:
            # asyncio words it "Connect call failed (address)"; the errno says why
            return os.strerror(exc.errno).lower()
        if exc.strerror:
            return exc.strerror.lower()
    return str(exc) or type(exc).__name__
