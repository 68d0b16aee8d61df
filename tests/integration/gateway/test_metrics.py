"""The gateway's Prometheus metrics, scraped from its metrics port; the public port exposes
none of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from kumo.client import AsyncClient
from tests.conftest import ApiServerProcess, unique_name
from tests.integration.auth.helpers import mint_token
from tests.integration.gateway.conftest import (
    BackendProcess,
    GatewayProcess,
    eventually,
    publish,
)


async def test_requests_are_counted_by_service_method_and_code(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    web = backends("web")
    await publish(async_client, namespace, "web", [web])
    await publish(async_client, namespace, "empty", [])
    base = f"{gateway.url}/s/{namespace}"

    async def routed() -> bool:
        ok = (await http.get(f"{base}/web/status/204")).status_code == 204
        empty = (await http.get(f"{base}/empty/")).status_code == 503
        return ok and empty

    await eventually(routed)
    labels = {"namespace": namespace, "service": "web"}
    before = {
        code: gateway.metric("kumo_gateway_requests_total", code=code, **labels)
        for code in ("200", "404", "500", "204")
    }
    empty_before = gateway.metric(
        "kumo_gateway_requests_total", namespace=namespace, service="empty", code="503"
    )
    count_before = gateway.metric("kumo_gateway_request_duration_seconds_count", **labels)

    for _ in range(3):
        assert (await http.get(f"{base}/web/")).status_code == 200
    assert (await http.post(f"{base}/web/", content=b"x")).status_code == 200
    for _ in range(2):
        assert (await http.get(f"{base}/web/status/404")).status_code == 404
    assert (await http.get(f"{base}/web/status/500")).status_code == 500
    assert (await http.get(f"{base}/empty/")).status_code == 503

    def delta(code: str, **extra: str) -> float:
        return (
            gateway.metric("kumo_gateway_requests_total", code=code, **labels, **extra)
            - before[code]
        )

    assert delta("200") == 4
    assert delta("200", method="GET") == 3 and delta("200", method="POST") == 1
    assert delta("404") == 2
    assert delta("500") == 1
    assert delta("204") == 0
    assert (
        gateway.metric(
            "kumo_gateway_requests_total", namespace=namespace, service="empty", code="503"
        )
        - empty_before
        == 1
    )
    assert (
        gateway.metric("kumo_gateway_request_duration_seconds_count", **labels) - count_before == 7
    )
    assert gateway.metric("kumo_gateway_requests_in_flight", **labels) == 0

    # While a request runs it is in flight.
    slow = asyncio.create_task(http.get(f"{base}/web/sleep?seconds=1"))
    await eventually(
        lambda: _async(gateway.metric("kumo_gateway_requests_in_flight", **labels) == 1)
    )
    assert (await slow).status_code == 200
    assert gateway.metric("kumo_gateway_requests_in_flight", **labels) == 0

    # Unroutable requests are counted without names taken from the request.
    unrouted = gateway.metric("kumo_gateway_requests_total", namespace="", service="", code="404")
    await http.get(f"{base}/no-such-service/")
    assert (
        gateway.metric("kumo_gateway_requests_total", namespace="", service="", code="404")
        == unrouted + 1
    )
    names = {name for name, _, _ in gateway.metrics()}
    assert not any("no-such-service" in str(labels) for _, labels, _ in gateway.metrics())
    assert {
        "kumo_gateway_requests_total",
        "kumo_gateway_request_duration_seconds_bucket",
        "kumo_gateway_requests_in_flight",
        "kumo_gateway_upstream_ejections_total",
        "kumo_gateway_retries_total",
    } <= names


async def _async(value: bool) -> bool:
    return value


async def test_metrics_and_health_are_not_on_the_public_port(
    gateway: GatewayProcess, http: httpx.AsyncClient
) -> None:
    public = await http.get(f"{gateway.url}/metrics")
    assert public.status_code == 404
    assert "kumo_gateway" not in public.text
    private = await http.get(
        f"http://127.0.0.1:{gateway.metrics_port}/metrics",
        headers={"Authorization": f"Bearer {gateway.metrics_token}"},
    )
    assert private.status_code == 200
    assert private.headers["content-type"].startswith("text/plain")
    for path in ("/healthz", "/readyz"):
        assert (await http.get(f"http://127.0.0.1:{gateway.metrics_port}{path}")).text == "ok\n"


async def test_metrics_need_a_token_the_api_server_allows(
    gateway: GatewayProcess, api_server: ApiServerProcess, http: httpx.AsyncClient
) -> None:
    url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
    anonymous = await http.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "kumo_gateway" not in anonymous.text
    forged = await http.get(url, headers={"Authorization": "Bearer kumo_0000.forged"})
    assert forged.status_code == 401
    _, nobody = mint_token(api_server, unique_name("nobody"))
    denied = await http.get(url, headers={"Authorization": f"Bearer {nobody}"})
    assert denied.status_code == 403
    assert "kumo_gateway" not in denied.text
    # The system:monitoring group may read /metrics (bootstrap ClusterRoleBinding).
    _, scraper = mint_token(api_server, unique_name("prometheus"), ["system:monitoring"])
    allowed = await http.get(url, headers={"Authorization": f"Bearer {scraper}"})
    assert allowed.status_code == 200
    assert "kumo_gateway_requests_total" in allowed.text
