"""The gateway as one object: public listeners, route source, metrics server, sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kumo.client import AsyncClient
from kumo.platform.gateway.activator import Activator, ApiActivator
from kumo.platform.gateway.auth import ApiReviewer
from kumo.platform.gateway.metrics import Authorize, GatewayMetrics, MetricsServer, ServiceStats
from kumo.platform.gateway.options import GatewayOptions
from kumo.platform.gateway.proxy import Proxy
from kumo.platform.gateway.routing import RouteTable
from kumo.platform.gateway.sources import RouteSource

log = logging.getLogger(__name__)


class Gateway:
    """Routes HTTP to Services. With a client, routes follow the API's Services and Endpoints
    (and cold starts go through ``ApiActivator``); without one, the caller fills ``table``.

    ``start()`` returns once the listeners are bound (``port`` / ``metrics_port`` then hold the
    bound ports, also when 0 was asked for); requests get 503 until the first list of Services
    and Endpoints is in (``synced``)."""

    def __init__(
        self,
        client: AsyncClient | None,
        options: GatewayOptions | None = None,
        *,
        activator: Activator | None = None,
        informer_options: dict[str, object] | None = None,
        metrics_authorizer: Authorize | None = None,
    ) -> None:
        self.client = client
        self.options = options or GatewayOptions()
        self.metrics = GatewayMetrics()
        self.table: RouteTable[ServiceStats] = RouteTable(
            self.metrics.stats_for,
            default_timeout=self.options.request_timeout,
            drop_stats=self.metrics.drop,
        )
        if activator is None and client is not None:
            activator = ApiActivator(client)
        self.activator = activator
        # /metrics needs a token the API server allows to read it; without an API server
        # (tests, embedding) there is no one to ask, and it is open unless told otherwise.
        if metrics_authorizer is None and client is not None:
            metrics_authorizer = ApiReviewer(client)
        self.metrics_authorizer = metrics_authorizer
        self.informer_options = informer_options or {}
        self.proxy: Proxy | None = None
        self.source: RouteSource | None = None
        self.port = 0
        self.metrics_port: int | None = None
        self._servers: list[asyncio.Server] = []
        self._metrics_server: MetricsServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def synced(self) -> bool:
        return self.proxy is not None and self.proxy.synced

    async def start(self) -> None:
        proxy = self.proxy = Proxy(self.options, self.table, self.metrics, self.activator)
        loop = asyncio.get_running_loop()
        if self.client is not None:
            self.source = RouteSource(self.client, self.table, **self.informer_options)
            self.source.start()
            self._tasks.append(loop.create_task(self._wait_synced(), name="gateway sync"))
        else:
            proxy.synced = True
        port = self.options.port
        try:
            for address in self.options.addresses:
                server = await loop.create_server(
                    proxy.connection_factory(), address, port, reuse_address=True, backlog=2048
                )
                self._servers.append(server)
                if port == 0:
                    port = server.sockets[0].getsockname()[1]
            self.port = port
            if self.options.metrics_port is not None:
                self._metrics_server = MetricsServer(
                    self.metrics, lambda: self.synced, self.metrics_authorizer
                )
                self.metrics_port = await self._metrics_server.start(
                    self.options.metrics_address, self.options.metrics_port
                )
        except BaseException:
            await self.stop(drain_timeout=0)
            raise
        self._tasks.append(loop.create_task(self._sweep(), name="gateway sweeper"))
        log.info(
            "gateway listening on %s port %d%s",
            ", ".join(self.options.addresses),
            self.port,
            f" (metrics on {self.options.metrics_address}:{self.metrics_port})"
            if self.metrics_port is not None
            else "",
        )

    async def _wait_synced(self) -> None:
        assert self.source is not None and self.proxy is not None
        await self.source.wait_for_sync()
        self.proxy.synced = True
        log.info("gateway routes synced: %d services", len(self.table.routes))

    async def _sweep(self) -> None:
        assert self.proxy is not None
        proxy = self.proxy
        every = max(1, round(1.0 / self.options.tick))
        while True:
            await asyncio.sleep(self.options.tick)
            try:
                proxy.sweep()
                if proxy.tick % every == 0:
                    proxy.sweep_pools()
            except Exception:
                log.exception("gateway sweeper failed")

    def in_flight(self) -> int:
        proxy = self.proxy
        return 0 if proxy is None else sum(len(c.queue) for c in proxy.clients)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop accepting connections, let running requests finish (up to ``drain_timeout``),
        then close everything."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        deadline = asyncio.get_running_loop().time() + drain_timeout
        # polled: requests end in protocol callbacks, which have nothing to await
        while self.in_flight() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        proxy = self.proxy
        if proxy is not None:
            for client in list(proxy.clients):
                client.abort() if client.queue else client.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._metrics_server is not None:
            await self._metrics_server.stop()
            self._metrics_server = None
        if self.source is not None:
            await self.source.stop()
            self.source = None
        self.table.clear()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
