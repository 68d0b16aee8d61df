"""The HTTP gateway: routes ``http://<svc>.<ns>.localhost:PORT/`` and ``/s/<ns>/<svc>/...`` to
a Service's ready endpoints (from Services and Endpoints watched through the API), balances
round-robin or least-request, ejects endpoints whose connections fail and retries elsewhere,
streams bodies both ways, and holds ``/fn/<ns>/<name>/...`` requests through a Function's
cold start. Prometheus metrics and health checks are on a port of their own.

``run_gateway(client, stop, **options)`` is what ``kumo up`` and ``kumo gateway`` call; the
options are the fields of ``GatewayOptions``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kumo.client import AsyncClient
from kumo.model.functions import ACTIVATION_ANNOTATION
from kumo.platform.gateway.activator import (
    Activator,
    ApiActivator,
    FunctionNotFound,
)
from kumo.platform.gateway.balancer import LEAST_REQUEST, ROUND_ROBIN
from kumo.platform.gateway.options import DEFAULT_METRICS_PORT, DEFAULT_PORT, GatewayOptions
from kumo.platform.gateway.routing import LOAD_BALANCER_ANNOTATION, REQUEST_TIMEOUT_ANNOTATION
from kumo.platform.gateway.server import Gateway

__all__ = [
    "ACTIVATION_ANNOTATION",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_PORT",
    "LEAST_REQUEST",
    "LOAD_BALANCER_ANNOTATION",
    "REQUEST_TIMEOUT_ANNOTATION",
    "ROUND_ROBIN",
    "Activator",
    "ApiActivator",
    "FunctionNotFound",
    "Gateway",
    "GatewayOptions",
    "run_gateway",
]


async def run_gateway(client: AsyncClient, stop_event: asyncio.Event, **options: Any) -> None:
    """Run the gateway against the API server ``client`` talks to until ``stop_event`` is
    set; then stop accepting, let running requests finish (up to 10 s) and return."""
    gateway = Gateway(client, GatewayOptions.from_options(**options))
    await gateway.run(stop_event)
