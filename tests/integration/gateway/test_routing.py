"""Routing through a real gateway process: by Host header and by path, ports, forwarded
headers, and the gateway's own errors (404, 503) for what it cannot route."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from kumo.client import AsyncClient
from tests.integration.gateway.conftest import (
    BackendProcess,
    GatewayProcess,
    endpoints_subsets,
    eventually,
    publish,
)


async def _routed(http: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response | None:
    response = await http.get(url, **kwargs)  # type: ignore[arg-type]
    return response if response.status_code == 200 else None


async def test_routes_by_host_header_and_by_path(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    web = backends("web")
    await publish(async_client, namespace, "web", [web])
    first = await eventually(
        lambda: _routed(
            http, f"{gateway.url}/hello?x=1", headers={"Host": f"web.{namespace}.localhost"}
        )
    )
    seen = first.json()
    assert seen["backend"] == "web"
    assert seen["path"] == "/hello" and seen["query"] == {"x": "1"}

    for host in (
        f"web.{namespace}.localhost:{gateway.port}",
        f"web.{namespace}",
        f"web.{namespace}.svc",
    ):
        response = await http.get(f"{gateway.url}/a/b", headers={"Host": host})
        assert response.status_code == 200, (host, response.text)
        assert response.json()["path"] == "/a/b"

    # Path routing strips the /s/<ns>/<svc> prefix and says so in X-Forwarded-Prefix.
    response = await http.get(f"{gateway.url}/s/{namespace}/web/deep/path?q=2")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["path"] == "/deep/path" and document["query"] == {"q": "2"}
    headers = {name.lower(): value for name, value in document["headers"]}
    assert headers["x-forwarded-prefix"] == f"/s/{namespace}/web"
    for bare in (f"/s/{namespace}/web", f"/s/{namespace}/web?q=3"):
        response = await http.get(f"{gateway.url}{bare}")
        assert response.status_code == 200, response.text
        assert response.json()["path"] == "/"


async def test_forwarded_headers_are_added_and_hop_by_hop_headers_removed(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    web = backends("web")
    await publish(async_client, namespace, "web", [web])
    host = f"web.{namespace}.localhost"
    await eventually(lambda: _routed(http, gateway.url, headers={"Host": host}))
    response = await http.get(
        f"{gateway.url}/h",
        headers={
            "Host": host,
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "must not pass",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Custom": "passes",
        },
    )
    assert response.status_code == 200
    received = {name.lower(): value for name, value in response.json()["headers"]}
    assert received["host"] == host
    assert received["x-custom"] == "passes"
    assert received["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert received["x-forwarded-proto"] == "http"
    assert received["x-forwarded-host"] == host
    for hop in ("x-secret-hop", "keep-alive", "proxy-authorization", "connection"):
        assert hop not in received, hop
    assert response.headers["x-backend"] == "web"


async def test_service_port_choice(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    main, admin = backends("main"), backends("admin")
    subsets = endpoints_subsets([main], port_name="http") + endpoints_subsets(
        [admin], port_name="admin"
    )
    await publish(
        async_client,
        namespace,
        "app",
        [],
        # "http" is not first: the gateway still prefers it by default
        ports=[{"name": "admin", "port": 9000}, {"name": "http", "port": 80}],
        subsets=subsets,
    )
    default = await eventually(lambda: _routed(http, f"{gateway.url}/s/{namespace}/app/"))
    assert default.json()["backend"] == "main"
    by_name = await http.get(f"{gateway.url}/s/{namespace}/app:admin/x")
    assert by_name.json()["backend"] == "admin" and by_name.json()["path"] == "/x"
    by_number = await http.get(f"{gateway.url}/s/{namespace}/app:9000/x")
    assert by_number.json()["backend"] == "admin"
    missing = await http.get(f"{gateway.url}/s/{namespace}/app:7777/x")
    assert missing.status_code == 404
    assert missing.text.strip() == (
        f"service {namespace}/app has no port 7777 (ports: admin/9000, http/80)"
    )

    # Without a port named http, the first port is the default.
    await publish(
        async_client,
        namespace,
        "plain",
        [],
        ports=[{"name": "admin", "port": 9000}, {"name": "web", "port": 80}],
        subsets=endpoints_subsets([admin], port_name="admin")
        + endpoints_subsets([main], port_name="web"),
    )
    first = await eventually(lambda: _routed(http, f"{gateway.url}/s/{namespace}/plain/"))
    assert first.json()["backend"] == "admin"


async def test_unknown_service_is_404_and_no_ready_endpoints_is_503(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    unknown = await http.get(f"{gateway.url}/s/{namespace}/nothing/")
    assert unknown.status_code == 404
    assert unknown.text == f"service {namespace}/nothing not found\n"
    assert unknown.headers["kumo-gateway-error"] == "not-found"

    by_host = await http.get(gateway.url, headers={"Host": f"nothing.{namespace}.localhost"})
    assert by_host.status_code == 404
    assert by_host.text == f"service {namespace}/nothing not found\n"

    nowhere = await http.get(f"{gateway.url}/")
    assert nowhere.status_code == 404
    assert "no service addressed" in nowhere.text

    # Endpoints exist, but the only address is not ready.
    starting = backends("starting")
    await publish(async_client, namespace, "cold", [], not_ready=[starting])

    async def unavailable() -> httpx.Response | None:
        response = await http.get(f"{gateway.url}/s/{namespace}/cold/")
        return response if response.status_code == 503 else None

    answer = await eventually(unavailable)
    assert answer.text == f"no ready endpoints for service {namespace}/cold\n"
    assert answer.headers["kumo-gateway-error"] == "no-ready-endpoints"
    assert starting.stats()["total"] == 0

    as_json = await http.get(
        f"{gateway.url}/s/{namespace}/cold/", headers={"Accept": "application/json"}
    )
    assert as_json.status_code == 503
    status = as_json.json()
    assert status["kind"] == "Status" and status["code"] == 503
    assert status["reason"] == "ServiceUnavailable"
    assert status["message"] == f"no ready endpoints for service {namespace}/cold"

    # A keep-alive connection survives the gateway's own errors.
    async with httpx.AsyncClient(timeout=10) as one:
        for _ in range(3):
            assert (await one.get(f"{gateway.url}/s/{namespace}/nothing/")).status_code == 404
        assert gateway.metric("kumo_gateway_client_connections") >= 1


async def test_http10_head_pipelining_and_upgrade(
    gateway: GatewayProcess,
    backends: Callable[..., BackendProcess],
    async_client: AsyncClient,
    namespace: str,
    http: httpx.AsyncClient,
) -> None:
    web = backends("web")
    await publish(async_client, namespace, "web", [web])
    host = f"web.{namespace}.localhost"
    await eventually(lambda: _routed(http, gateway.url, headers={"Host": host}))

    head = await http.head(f"{gateway.url}/x", headers={"Host": host})
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    after_head = await http.get(f"{gateway.url}/after-head", headers={"Host": host})
    assert after_head.json()["path"] == "/after-head"

    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        # Two pipelined requests on one connection come back in order.
        writer.write(
            f"GET /one HTTP/1.1\r\nHost: {host}\r\n\r\n"
            f"GET /two HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        )
        paths = []
        for _ in range(2):
            head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head_bytes.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            body = await reader.readexactly(length)
            paths.append(httpx.Response(200, content=body).json()["path"])
        assert paths == ["/one", "/two"]

        # An HTTP/1.0 request without keep-alive is answered and the connection closed.
        writer.write(f"GET /old HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in answer.lower()
        assert b'"/old"' in answer
    finally:
        writer.close()

    # Connection upgrade: after the backend's 101, bytes flow both ways untouched.
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode()
        )
        switched = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert switched.startswith(b"HTTP/1.1 101")
        assert b"upgrade: echo" in switched.lower()
        for message in (b"ping", b"\x00\x01binary\xff" * 1000):
            writer.write(message)
            echoed = await asyncio.wait_for(reader.readexactly(len(message)), 10)
            assert echoed == message
    finally:
        writer.close()
