"""Addressing (Host and path forms) and route building from Service + Endpoints objects."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.platform.gateway.balancer import LeastRequest, RoundRobin
from kumo.platform.gateway.routing import (
    FUNCTION,
    SERVICE,
    RouteTable,
    parse_duration,
    service_from_host,
    split_path_target,
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web.shop.localhost", ("shop", "web")),
        ("web.shop.localhost:8080", ("shop", "web")),
        ("WEB.Shop.LocalHost.", ("shop", "web")),
        ("web.shop", ("shop", "web")),
        ("web.shop:80", ("shop", "web")),
        ("web.shop.svc", ("shop", "web")),
        ("web.shop.svc.cluster.local", ("shop", "web")),
        ("web.shop.apps.example.com", ("shop", "web")),
        ("localhost", None),
        ("localhost:8080", None),
        ("127.0.0.1:8080", None),
        ("10.0", None),
        ("[::1]:8080", None),
        ("a.b.c.localhost", None),
        ("web_1.shop.localhost", None),
        ("-web.shop", None),
        ("", None),
    ],
)
def test_service_from_host(host: str, expected: tuple[str, str] | None) -> None:
    assert service_from_host(host, ("localhost", "apps.example.com")) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (b"/s/shop/web/a/b?x=1", (SERVICE, "shop", "web", None, b"/a/b?x=1", b"/s/shop/web")),
        (b"/s/shop/web", (SERVICE, "shop", "web", None, b"/", b"/s/shop/web")),
        (b"/s/shop/web/", (SERVICE, "shop", "web", None, b"/", b"/s/shop/web")),
        (b"/s/shop/web?x=1", (SERVICE, "shop", "web", None, b"/?x=1", b"/s/shop/web")),
        (b"/s/shop/web:admin/x", (SERVICE, "shop", "web", "admin", b"/x", b"/s/shop/web:admin")),
        (b"/s/shop/web:8443", (SERVICE, "shop", "web", "8443", b"/", b"/s/shop/web:8443")),
        (b"/s/shop/web:/x", (SERVICE, "shop", "web", None, b"/x", b"/s/shop/web:")),
        (b"/fn/shop/hello/run", (FUNCTION, "shop", "hello", None, b"/run", b"/fn/shop/hello")),
        (b"/fn/shop/hello", (FUNCTION, "shop", "hello", None, b"/", b"/fn/shop/hello")),
        (b"/s/shop", None),
        (b"/s/shop/", None),
        (b"/s//web/", None),
        (b"/s/Shop/web/", None),
        (b"/s/shop/w%20b/", None),
        (b"/s/shop/\xff/", None),
        (b"/static/app.js", None),
        (b"/", None),
    ],
)
def test_split_path_target(url: bytes, expected: tuple[Any, ...] | None) -> None:
    target = split_path_target(url)
    if expected is None:
        assert target is None
        return
    assert target is not None
    assert (
        target.kind,
        target.namespace,
        target.name,
        target.port,
        target.path,
        target.prefix,
    ) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        (" 2m ", 120.0),
        ("1h", 3600.0),
        ("0", None),
        ("-1s", None),
        ("soon", None),
        ("5 days", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def service(
    name: str = "web", *, ports: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    return {
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations},
        "spec": {"ports": ports if ports is not None else [{"name": "http", "port": 80}], **spec},
    }


def subset(
    ready: list[str],
    ports: list[tuple[str | None, int]],
    not_ready: list[str] | None = None,
    protocol: str = "TCP",
) -> dict[str, Any]:
    return {
        "addresses": [{"ip": ip} for ip in ready],
        "notReadyAddresses": [{"ip": ip} for ip in not_ready or []],
        "ports": [
            {**({"name": name} if name else {}), "port": port, "protocol": protocol}
            for name, port in ports
        ],
    }


def addresses(table: RouteTable[None], name: str = "web", port: str | None = None) -> list[str]:
    route = table.get("shop", name)
    assert route is not None
    selected = route.select_port(port)
    assert selected is not None
    return [u.address for u in selected.balancer.upstreams]


def make_table() -> RouteTable[None]:
    return RouteTable(lambda namespace, name: None, default_timeout=60.0)


def test_ready_addresses_of_every_subset_at_the_port_of_the_same_name() -> None:
    table = make_table()
    endpoints = {
        "subsets": [
            subset(["127.0.0.1"], [("http", 31001), ("metrics", 31002)], not_ready=["127.0.0.2"]),
            subset(["127.0.0.1", "127.0.0.3"], [("http", 31005)]),
            subset(["127.0.0.4"], [("other", 31009)]),
            subset(["127.0.0.5"], [("http", 31010)], protocol="UDP"),
        ]
    }
    ports = [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]
    table.update("shop", "web", service(ports=ports), endpoints)
    assert addresses(table) == ["127.0.0.1:31001", "127.0.0.1:31005", "127.0.0.3:31005"]
    assert addresses(table, port="metrics") == ["127.0.0.1:31002"]
    assert addresses(table, port="9090") == ["127.0.0.1:31002"]
    route = table.get("shop", "web")
    assert route is not None and route.ready
    assert route.select_port("nope") is None


def test_single_unnamed_port_takes_the_only_endpoint_port() -> None:
    table = make_table()
    endpoints = {
        "subsets": [subset(["127.0.0.1"], [(None, 31001)]), subset(["127.0.0.1"], [("x", 31002)])]
    }
    table.update("shop", "web", service(ports=[{"port": 8080}]), endpoints)
    assert addresses(table) == ["127.0.0.1:31001", "127.0.0.1:31002"]


def test_not_ready_addresses_only_when_the_service_publishes_them() -> None:
    table = make_table()
    endpoints = {"subsets": [subset([], [("http", 31001)], not_ready=["127.0.0.1"])]}
    table.update("shop", "web", service(), endpoints)
    route = table.get("shop", "web")
    assert route is not None and not route.ready
    table.update("shop", "web", service(publishNotReadyAddresses=True), endpoints)
    assert addresses(table) == ["127.0.0.1:31001"]


def test_default_port_policy_timeout_and_notes() -> None:
    table = make_table()
    ports = [{"name": "grpc", "port": 9000}, {"name": "http", "port": 80}, {"name": "z", "port": 1}]
    table.update(
        "shop",
        "web",
        service(
            ports=ports,
            annotations={
                "kumo.dev/load-balancer": "least-request",
                "kumo.dev/request-timeout": "250ms",
            },
        ),
        None,
    )
    route = table.get("shop", "web")
    assert route is not None
    assert route.default is not None and route.default.name == "http"
    assert isinstance(route.default.balancer, LeastRequest)
    assert route.request_timeout == 0.25
    assert not route.ready and route.note == ""

    table.update(
        "shop",
        "other",
        service(
            "other",
            ports=[{"name": "grpc", "port": 9000}, {"name": "udp", "port": 53, "protocol": "UDP"}],
            annotations={"kumo.dev/load-balancer": "random", "kumo.dev/request-timeout": "never"},
        ),
        None,
    )
    other = table.get("shop", "other")
    assert other is not None
    assert other.default is not None and other.default.name == "grpc"
    assert [p.name for p in other.ports] == ["grpc"]  # UDP ports are not proxied
    assert isinstance(other.default.balancer, RoundRobin)  # unknown policy: the default
    assert other.request_timeout == 60.0  # malformed timeout: the default

    table.update(
        "shop",
        "ext",
        {
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "x.example"},
        },
        None,
    )
    ext = table.get("shop", "ext")
    assert ext is not None and ext.default is None and "ExternalName" in ext.note


def test_upstreams_are_shared_and_retired_when_no_route_lists_them() -> None:
    table = make_table()
    shared = {"subsets": [subset(["127.0.0.1"], [("http", 31001)])]}
    table.update("shop", "a", service("a"), shared)
    table.update("shop", "b", service("b"), shared)
    route_a, route_b = table.get("shop", "a"), table.get("shop", "b")
    assert route_a is not None and route_b is not None
    upstream = route_a.upstreams()[0]
    assert route_b.upstreams()[0] is upstream and upstream.refs == 2

    table.update("shop", "a", service("a"), {"subsets": []})
    assert upstream.refs == 1 and not upstream.retired
    table.update("shop", "b", None, shared)
    assert table.get("shop", "b") is None
    assert upstream.refs == 0 and upstream.retired
    assert table.upstreams == []


def test_rebuilding_a_route_keeps_upstream_state() -> None:
    table = make_table()
    endpoints = {"subsets": [subset(["127.0.0.1"], [("http", 31001)])]}
    table.update("shop", "web", service(), endpoints)
    route = table.get("shop", "web")
    assert route is not None
    upstream = route.upstreams()[0]
    upstream.eject(now=100.0, base=1.0, cap=30.0)
    more = {
        "subsets": [
            subset(["127.0.0.1"], [("http", 31001)]),
            subset(["127.0.0.1"], [("http", 31002)]),
        ]
    }
    table.update("shop", "web", service(), more)
    rebuilt = table.get("shop", "web")
    assert rebuilt is not None
    assert rebuilt.upstreams()[0] is upstream and upstream.ejected_until == 101.0
    assert upstream.refs == 1


async def test_wait_ready_returns_once_the_route_has_an_endpoint() -> None:
    import asyncio

    table = make_table()
    waiting = asyncio.create_task(table.wait_ready("shop", "web"))
    await asyncio.sleep(0)
    table.update("shop", "web", service(), None)
    await asyncio.sleep(0)
    assert not waiting.done()
    table.update("shop", "web", service(), {"subsets": [subset(["127.0.0.1"], [("http", 31001)])]})
    route = await asyncio.wait_for(waiting, 1)
    assert route.ready
