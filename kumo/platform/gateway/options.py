"""The gateway's settings, with the defaults ``kumo gateway`` and ``kumo up`` use."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

DEFAULT_PORT = 8080
DEFAULT_METRICS_PORT = 9480


@dataclass(slots=True)
class GatewayOptions:
    """Every knob of the gateway. Times are in seconds."""

    # Where the public HTTP port listens; several addresses share one port (e.g. 127.0.0.1 and
    # the Podman bridge's gateway address, so pods can reach Services through it too).
    addresses: tuple[str, ...] = ("127.0.0.1",)
    port: int = DEFAULT_PORT
    # Prometheus metrics and health checks, on their own port (None: not served).
    metrics_address: str = "127.0.0.1"
    metrics_port: int | None = DEFAULT_METRICS_PORT
    # Host-header suffixes: ``<svc>.<ns>.<domain>`` routes to Service ns/svc.
    domains: tuple[str, ...] = ("localhost",)

    connect_timeout: float = 3.0
    # From the end of the request to the upstream's response headers; a Service may override it
    # with the ``kumo.dev/request-timeout`` annotation.
    request_timeout: float = 60.0
    # No byte in either direction for this long while a request or response body streams.
    stream_idle_timeout: float = 300.0
    # An idle keep-alive connection from a client is closed after this long.
    client_idle_timeout: float = 75.0
    # Idle pooled connections to an upstream are closed after this long.
    upstream_idle_timeout: float = 30.0
    max_idle_per_upstream: int = 128

    # Retries after a connect failure, or (idempotent requests only) after the upstream dropped
    # the connection before answering.
    max_retries: int = 2
    # Request bodies up to this size are kept so the request can be retried.
    retry_buffer_bytes: int = 64 * 1024
    # Passive ejection: the n-th consecutive ejection of an endpoint lasts
    # min(base * 2**(n-1), max).
    ejection_base: float = 1.0
    ejection_max: float = 30.0

    # Function cold start: how long a request to a function with no ready pod is held.
    cold_start_timeout: float = 60.0

    max_header_bytes: int = 64 * 1024
    # Granularity of the timeout checks.
    tick: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.addresses, str):
            self.addresses = (self.addresses,)
        self.addresses = tuple(self.addresses) or ("127.0.0.1",)
        self.domains = tuple(d.strip(".").lower() for d in self.domains if d.strip("."))

    @classmethod
    def from_options(cls, **options: Any) -> GatewayOptions:
        """``GatewayOptions(**options)``, with a clear error naming an unknown option."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown gateway option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**options)
