"""The gateway's Prometheus metrics and the small HTTP server that exposes them.

The proxy counts into plain Python numbers on a per-Service ``ServiceStats`` (no locks, no
label lookups on the request path); a collector on the gateway's own ``CollectorRegistry``
turns them into metric families when scraped. Exposed series:

- ``kumo_gateway_requests_total{namespace,service,method,code}``
- ``kumo_gateway_request_duration_seconds{namespace,service}`` (histogram; until the last
  response byte)
- ``kumo_gateway_requests_in_flight{namespace,service}``
- ``kumo_gateway_upstream_ejections_total{namespace,service}``
- ``kumo_gateway_retries_total{namespace,service}``
- ``kumo_gateway_cold_starts_total{namespace,service}``
- ``kumo_gateway_client_connections`` / ``kumo_gateway_upstream_connections`` (open now)
- ``kumo_gateway_upstream_connects_total`` / ``kumo_gateway_upstream_connect_failures_total``

Requests that match no Service are counted with empty ``namespace`` and ``service`` labels
(never with names taken from the request, which would let clients create series).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class ServiceStats:
    """Counters of one Service, updated by the proxy on every request."""

    __slots__ = (
        "buckets",
        "cold_starts",
        "ejections",
        "in_flight",
        "latency_sum",
        "name",
        "namespace",
        "requests",
        "retries",
    )

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.requests: dict[tuple[bytes, int], int] = {}
        self.in_flight = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.ejections = 0
        self.retries = 0
        self.cold_starts = 0

    def observe(self, method: bytes, code: int, seconds: float) -> None:
        key = (method, code)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def count(self, code: int | None = None) -> int:
        """Requests answered so far (with ``code`` only, if given)."""
        return sum(n for (_, c), n in self.requests.items() if code is None or c == code)


class GatewayMetrics(Collector):
    """Every ``ServiceStats`` plus gateway-wide counters, on a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.services: dict[tuple[str, str], ServiceStats] = {}
        self.unrouted = ServiceStats("", "")
        self.client_connections = 0
        self.upstream_connections = 0
        self.upstream_connects = 0
        self.upstream_connect_failures = 0
        self.registry.register(self)

    def stats_for(self, namespace: str, name: str) -> ServiceStats:
        stats = self.services.get((namespace, name))
        if stats is None:
            stats = self.services[(namespace, name)] = ServiceStats(namespace, name)
        return stats

    def drop(self, namespace: str, name: str) -> None:
        """Forget a deleted Service's series (kept while requests to it are still running)."""
        stats = self.services.get((namespace, name))
        if stats is not None and stats.in_flight <= 0:
            del self.services[(namespace, name)]

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        labels = ["namespace", "service"]
        requests = CounterMetricFamily(
            "kumo_gateway_requests",
            "Requests answered by the gateway, by Service, method and status code.",
            labels=[*labels, "method", "code"],
        )
        latency = HistogramMetricFamily(
            "kumo_gateway_request_duration_seconds",
            "Time from a request's headers to the last byte of its response.",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "kumo_gateway_requests_in_flight",
            "Requests being proxied right now.",
            labels=labels,
        )
        ejections = CounterMetricFamily(
            "kumo_gateway_upstream_ejections",
            "Endpoints taken out of rotation after a failed connection.",
            labels=labels,
        )
        retries = CounterMetricFamily(
            "kumo_gateway_retries",
            "Requests sent again to another endpoint after a failed attempt.",
            labels=labels,
        )
        cold_starts = CounterMetricFamily(
            "kumo_gateway_cold_starts",
            "Function requests held until a pod became ready.",
            labels=labels,
        )
        for stats in [self.unrouted, *self.services.values()]:
            names = [stats.namespace, stats.name]
            for (method, code), count in list(stats.requests.items()):
                requests.add_metric([*names, method.decode("latin-1"), str(code)], count)
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), stats.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric(names, buckets, stats.latency_sum)
            in_flight.add_metric(names, stats.in_flight)
            ejections.add_metric(names, stats.ejections)
            retries.add_metric(names, stats.retries)
            cold_starts.add_metric(names, stats.cold_starts)
        yield from (requests, latency, in_flight, ejections, retries, cold_starts)
        yield GaugeMetricFamily(
            "kumo_gateway_client_connections",
            "Open client connections.",
            value=self.client_connections,
        )
        yield GaugeMetricFamily(
            "kumo_gateway_upstream_connections",
            "Open connections to upstreams (busy or idle in a pool).",
            value=self.upstream_connections,
        )
        yield CounterMetricFamily(
            "kumo_gateway_upstream_connects",
            "Connections opened to upstreams.",
            value=self.upstream_connects,
        )
        yield CounterMetricFamily(
            "kumo_gateway_upstream_connect_failures",
            "Connection attempts to upstreams that failed (refused, reset or timed out).",
            value=self.upstream_connect_failures,
        )


# (bearer token or None, path) -> 200 (allowed), 401, 403 or 503
Authorize = Callable[[str | None, str], Awaitable[int]]


class MetricsServer:
    """``GET /metrics`` (Prometheus text format), ``/healthz`` and ``/readyz`` on a port of
    their own, so the public port exposes nothing about the gateway itself.

    With ``authorize`` (the gateway's ``ApiReviewer``), ``/metrics`` needs a bearer token
    the API server says may ``get /metrics``; the health checks stay open."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        ready: Callable[[], bool],
        authorize: Authorize | None = None,
    ) -> None:
        self.metrics = metrics
        self.ready = ready
        self.authorize = authorize
        self._server: asyncio.Server | None = None

    async def start(self, address: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, address, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = request_line.partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            code = 200
            if path == "/metrics" and method in ("GET", "HEAD") and self.authorize is not None:
                code = await self.authorize(_bearer(head), path)
            if code == 200:
                status, content_type, body = self._answer(method, path)
            else:
                status, content_type = code, "text/plain; charset=utf-8"
                body = _DENIALS.get(code, b"denied\n")
            extra = b'WWW-Authenticate: Bearer realm="kumo"\r\n' if status == 401 else b""
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                b"%sConnection: close\r\n\r\n"
                % (status, _REASONS.get(status, b"OK"), content_type.encode(), len(body), extra)
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except Exception:
            log.exception("metrics server: request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD are allowed here\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self.metrics.render()
        if path in ("/healthz", "/livez"):
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            if self.ready():
                return 200, "text/plain; charset=utf-8", b"ok\n"
            return 503, "text/plain; charset=utf-8", b"routes not synced with the API server yet\n"
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n"


def _bearer(head: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
    return None


_DENIALS = {
    401: b"Unauthorized: send 'Authorization: Bearer <token>'\n",
    403: b"Forbidden: this user may not get /metrics\n",
    503: b"cannot check the token with the API server right now\n",
}

_REASONS = {
    200: b"OK",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    503: b"Service Unavailable",
}
