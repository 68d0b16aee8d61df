"""Load balancing, passive ejection, retries and endpoint updates, through a real gateway
process and real backend processes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import httpx

from kumo.client import AsyncClient
from kumo.platform.gateway import LOAD_BALANCER_ANNOTATION
from tests.integration.gateway.conftest import (
    BackendProcess,
    GatewayProcess,
    endpoints_subsets,
    eventually,
    publish,
    set_endpoints,
)


async def _all_seen(
    http: httpx.AsyncClient, url: str, names: set[str], tries: int = 50
) -> set[str] | None:
    seen: set[str] = set()
    for _ in range(tries):
        response = await http.get(url)
        if response.status_code == 200:
            seen.add(response.headers["x-backend"])
    return seen if seen == names else None


async def test_round_robin_spreads_evenly_over_pooled_connections(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    pool = [backends(f"rr{i}") for i in range(3)]
    await publish(async_client, namespace, "web", pool)
    url = f"{gateway.url}/s/{namespace}/web/"
    await eventually(lambda: _all_seen(http, url, {"rr0", "rr1", "rr2"}))
    before = {b.name: b.stats()["total"] for b in pool}
    connects_before = gateway.metric("kumo_gateway_upstream_connects_total")

    counts: Counter[str] = Counter()
    for _ in range(300):
        response = await http.get(url)
        assert response.status_code == 200
        counts[response.headers["x-backend"]] += 1
    assert counts == {"rr0": 100, "rr1": 100, "rr2": 100}
    assert {b.name: b.stats()["total"] - before[b.name] for b in pool} == counts

    # Concurrent requests also spread evenly, and reuse pooled upstream connections.
    concurrent: Counter[str] = Counter()

    async def one() -> None:
        response = await http.get(url)
        assert response.status_code == 200
        concurrent[response.headers["x-backend"]] += 1

    await asyncio.gather(*(one() for _ in range(60)))
    assert concurrent == {"rr0": 20, "rr1": 20, "rr2": 20}
    # 360 requests, at most one connection per concurrent request and backend
    opened = gateway.metric("kumo_gateway_upstream_connects_total") - connects_before
    assert opened <= 60, opened


async def test_least_request_prefers_the_idle_backend(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    pool = [backends("lr0"), backends("lr1")]
    await publish(
        async_client,
        namespace,
        "web",
        pool,
        annotations={LOAD_BALANCER_ANNOTATION: "least-request"},
    )
    url = f"{gateway.url}/s/{namespace}/web"
    await eventually(lambda: _all_seen(http, f"{url}/", {"lr0", "lr1"}))

    # Two slow requests on one backend... (while idle, least-request alternates like round
    # robin, so two sequential slow starts land on different backends; start one, then add a
    # second slow one once the first is known to be running)
    slow_one = asyncio.create_task(http.get(f"{url}/sleep?seconds=2"))
    busy = await eventually(lambda: _busy_backend(pool))
    idle = next(b for b in pool if b is not busy)

    # ...then every quick request goes to the other, idle one.
    quick: Counter[str] = Counter()
    for _ in range(10):
        response = await http.get(f"{url}/quick")
        quick[response.headers["x-backend"]] += 1
    assert quick == {idle.name: 10}
    assert (await slow_one).headers["x-backend"] == busy.name

    # Round robin, by contrast, would have alternated.
    await publish(async_client, namespace, "rr", pool)
    rr_url = f"{gateway.url}/s/{namespace}/rr"
    await eventually(lambda: _all_seen(http, f"{rr_url}/", {"lr0", "lr1"}))
    slow_two = asyncio.create_task(http.get(f"{rr_url}/sleep?seconds=1"))
    await asyncio.sleep(0.2)
    alternating: Counter[str] = Counter()
    for _ in range(10):
        response = await http.get(f"{rr_url}/quick")
        alternating[response.headers["x-backend"]] += 1
    assert alternating == {"lr0": 5, "lr1": 5}
    await slow_two


async def _busy_backend(pool: list[BackendProcess]) -> BackendProcess | None:
    for backend in pool:
        if backend.stats()["paths"].get("/sleep"):
            return backend
    return None


async def test_a_killed_backend_is_ejected_and_gets_fail_no_request(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
) -> None:
    pool = [backends(f"k{i}") for i in range(3)]
    await publish(async_client, namespace, "web", pool)
    url = f"{gateway.url}/s/{namespace}/web/"
    async with httpx.AsyncClient(timeout=10) as http:
        await eventually(lambda: _all_seen(http, url, {"k0", "k1", "k2"}))
        statuses: Counter[int] = Counter()
        after_kill: Counter[str] = Counter()
        killed = asyncio.Event()
        stop = time.monotonic() + 3.0

        async def client() -> None:
            while time.monotonic() < stop:
                sent_after_kill = killed.is_set()
                response = await http.get(url)
                statuses[response.status_code] += 1
                if sent_after_kill:
                    after_kill[response.headers.get("x-backend", "?")] += 1

        workers = [asyncio.create_task(client()) for _ in range(4)]
        await asyncio.sleep(1.0)
        pool[1].kill()
        killed.set()
        await asyncio.gather(*workers)

    assert set(statuses) == {200}, statuses
    assert statuses[200] > 100
    assert "k1" not in after_kill and after_kill["k0"] > 0 and after_kill["k2"] > 0
    labels = {"namespace": namespace, "service": "web"}
    assert gateway.metric("kumo_gateway_upstream_ejections_total", **labels) >= 1
    assert gateway.metric("kumo_gateway_retries_total", **labels) >= 1
    assert gateway.metric("kumo_gateway_requests_total", code="502", **labels) == 0


async def test_idempotent_requests_are_retried_and_posts_are_not(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    # The backend answers nothing for /drop: it closes the connection as it receives it.
    dropping = backends("dropping", "--drops")
    await publish(async_client, namespace, "lonely", [dropping])
    url = f"{gateway.url}/s/{namespace}/lonely/drop"

    async def failed() -> httpx.Response | None:
        response = await http.post(url, content=b"payload")
        return response if response.status_code == 502 else None

    post = await eventually(failed)
    assert post.headers["kumo-gateway-error"] == "upstream-failed"
    assert "closed the connection before answering" in post.text
    assert dropping.stats()["paths"]["/drop"] == 1  # a POST is sent once, never again

    # With a healthy second endpoint, a GET that meets the dropping one is retried there.
    healthy = backends("healthy")
    await publish(async_client, namespace, "pair", [dropping, healthy])
    pair = f"{gateway.url}/s/{namespace}/pair"
    await eventually(lambda: _all_seen(http, f"{pair}/", {"dropping", "healthy"}))
    gets = [await http.get(f"{pair}/drop") for _ in range(6)]
    assert [r.status_code for r in gets] == [200] * 6
    assert {r.headers["x-backend"] for r in gets} == {"healthy"}
    puts = [await http.put(f"{pair}/drop", content=b"x" * 1000) for _ in range(4)]
    assert [r.status_code for r in puts] == [200] * 4


async def test_endpoint_changes_take_effect_within_a_second(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    first, second = backends("first"), backends("second")
    await publish(async_client, namespace, "web", [first])
    url = f"{gateway.url}/s/{namespace}/web/"
    await eventually(lambda: _all_seen(http, url, {"first"}, tries=3))

    async def answered_by(names: set[str]) -> bool:
        seen = set()
        for _ in range(6):
            response = await http.get(url)
            seen.add(response.headers.get("x-backend"))
        return seen == names

    started = time.monotonic()
    await set_endpoints(async_client, namespace, "web", endpoints_subsets([first, second]))
    await eventually(lambda: answered_by({"first", "second"}), within=5)
    added = time.monotonic() - started

    started = time.monotonic()
    await set_endpoints(async_client, namespace, "web", endpoints_subsets([second]))
    await eventually(lambda: answered_by({"second"}), within=5)
    removed = time.monotonic() - started
    assert added < 1.0 and removed < 1.0, (added, removed)

    # Moving the address to "not ready" takes it out too: nothing is left.
    await set_endpoints(async_client, namespace, "web", endpoints_subsets([], [second]))

    async def unavailable() -> bool:
        return (await http.get(url)).status_code == 503

    await eventually(unavailable, within=1.0)
