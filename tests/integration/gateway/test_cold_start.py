"""``/fn/<ns>/<name>/...`` with no ready pod: the gateway asks for one (the activation
annotation on the Function) and holds the request until the Function's Service has a ready
endpoint. The test plays the Function controller's part through the API: it waits for the
request, starts a real backend and lists it in the Endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from kumo.client import AsyncClient
from kumo.model.functions import Function
from kumo.model.registry import for_model
from kumo.platform.gateway import ACTIVATION_ANNOTATION
from tests.integration.gateway.conftest import (
    COLD_START_TIMEOUT,
    BackendProcess,
    GatewayProcess,
    endpoints_subsets,
    eventually,
    publish,
    set_endpoints,
)


async def _create_function(client: AsyncClient, namespace: str, name: str) -> None:
    await client.create_raw(
        {
            "apiVersion": "kumo.dev/v1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": "docker.io/library/python:3.11"},
        },
        namespace,
    )


async def _activation(client: AsyncClient, namespace: str, name: str) -> str | None:
    function: dict[str, Any] = await client.get_raw(for_model(Function), name, namespace)
    annotations = function["metadata"].get("annotations") or {}
    value: str | None = annotations.get(ACTIVATION_ANNOTATION)
    return value


async def test_a_request_is_held_through_a_cold_start(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    await _create_function(async_client, namespace, "hello")
    await publish(async_client, namespace, "hello", [])  # the Function's Service, no pod yet
    url = f"{gateway.url}/fn/{namespace}/hello/greet?who=kumo"

    started = time.monotonic()
    held = asyncio.create_task(http.get(url))
    requested = await eventually(lambda: _activation(async_client, namespace, "hello"), within=5)
    when = datetime.fromisoformat(requested)
    assert abs((datetime.now(UTC) - when).total_seconds()) < 30
    assert not held.done()

    # The "controller" brings a pod up: it takes a moment, the request waits.
    await asyncio.sleep(0.5)
    assert not held.done()
    pod = backends("hello-pod")
    await set_endpoints(async_client, namespace, "hello", endpoints_subsets([pod]))
    response = await asyncio.wait_for(held, 10)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["backend"] == "hello-pod"
    assert document["path"] == "/greet" and document["query"] == {"who": "kumo"}
    headers = {name.lower(): value for name, value in document["headers"]}
    assert headers["x-forwarded-prefix"] == f"/fn/{namespace}/hello"
    assert time.monotonic() - started >= 0.5

    # Warm now: answered at once, no new activation.
    again = await http.get(url)
    assert again.status_code == 200
    assert await _activation(async_client, namespace, "hello") == requested
    labels = {"namespace": namespace, "service": "hello"}
    assert gateway.metric("kumo_gateway_cold_starts_total", **labels) == 1
    assert gateway.metric("kumo_gateway_requests_total", code="200", **labels) == 2


async def test_cold_start_errors(
    gateway: GatewayProcess,
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    missing = await http.get(f"{gateway.url}/fn/{namespace}/nope/")
    assert missing.status_code == 404
    assert missing.text == f"function {namespace}/nope not found\n"

    # A Function whose pod never becomes ready: the hold ends with 504.
    await _create_function(async_client, namespace, "stuck")
    started = time.monotonic()
    stuck = await http.get(f"{gateway.url}/fn/{namespace}/stuck/")
    waited = time.monotonic() - started
    assert stuck.status_code == 504
    assert stuck.text == (
        f"function {namespace}/stuck has no ready pod after waiting "
        f"{COLD_START_TIMEOUT:g}s (cold start)\n"
    )
    assert COLD_START_TIMEOUT <= waited < COLD_START_TIMEOUT + 3
    assert await _activation(async_client, namespace, "stuck") is not None
