"""The cluster IP allocator on a real (temporary) SQLite store: unique addresses from the
range, the lower band kept for static ones, requested addresses honoured or refused with
a 422 naming spec.clusterIP, addresses free again once their Service is gone, and the
kubernetes Service kept by the API server."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kumo.model.core import Service
from kumo.model.registry import for_model
from kumo.platform.api.errors import ApiError
from kumo.platform.api.serviceips import (
    ServiceIPs,
    advertised_address,
    ensure_kubernetes_service,
    parse_cidr,
)
from kumo.platform.store.sqlite import SQLiteStore

INFO = for_model(Service)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(tmp_path / "store.db")
    try:
        yield opened
    finally:
        await opened.close()


def service(name: str, namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80}], **spec},
    }


async def create(allocator: ServiceIPs, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    async with allocator.assigning(INFO, obj):
        return await allocator.store.create(
            f"registry/core/services/{meta['namespace']}/{meta['name']}", obj
        )


def problem(err: ApiError) -> tuple[str, str]:
    cause = err.details["causes"][0]
    return cause["field"], cause["message"]


async def test_addresses_are_unique_in_range_and_outside_the_lower_band(
    store: SQLiteStore,
) -> None:
    allocator = ServiceIPs("10.96.0.0/24", store)
    network = ipaddress.ip_network("10.96.0.0/24")
    ips = []
    for i in range(50):
        stored = await create(allocator, service(f"s{i}"))
        ip = stored["spec"]["clusterIP"]
        assert stored["spec"]["clusterIPs"] == [ip]
        ips.append(ipaddress.ip_address(ip))
    assert len(set(ips)) == 50
    assert all(ip in network for ip in ips)
    # /24: 254 usable, the lowest 16 are left for static use (.1 kubernetes, .10 DNS).
    assert all(int(ip) - int(network.network_address) > 16 for ip in ips)


async def test_concurrent_creates_never_share_an_address(store: SQLiteStore) -> None:
    allocator = ServiceIPs("10.96.0.0/27", store)  # 30 usable addresses
    stored = await asyncio.gather(*(create(allocator, service(f"s{i}")) for i in range(30)))
    assert len({s["spec"]["clusterIP"] for s in stored}) == 30
    with pytest.raises(ApiError) as err:
        await create(allocator, service("one-too-many"))
    assert err.value.code == 422
    assert problem(err.value)[0] == "spec.clusterIP"
    assert "is full" in problem(err.value)[1]


async def test_requested_addresses(store: SQLiteStore) -> None:
    allocator = ServiceIPs("10.96.0.0/16", store)
    stored = await create(allocator, service("dns", clusterIP="10.96.0.10"))
    assert stored["spec"]["clusterIP"] == "10.96.0.10"
    assert stored["spec"]["clusterIPs"] == ["10.96.0.10"]
    cases = {
        "10.96.0.10": "provided IP is already allocated",
        "10.97.0.1": "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/16",
        "10.96.0.0": "provided IP is not in the valid range",
        "10.96.255.255": "provided IP is not in the valid range",
        "fd00::1": "provided IP is not in the valid range",
        "ten": "must be a valid IP address",
    }
    for ip, message in cases.items():
        with pytest.raises(ApiError) as err:
            await create(allocator, service("other", clusterIP=ip))
        assert err.value.code == 422
        field, text = problem(err.value)
        assert field == "spec.clusterIP"
        assert text.startswith(f'Invalid value: "{ip}": {message}'), text
    # clusterIPs alone is taken as the address; a mismatch is refused.
    stored = await create(allocator, service("by-list", clusterIPs=["10.96.0.11"]))
    assert stored["spec"]["clusterIP"] == "10.96.0.11"
    with pytest.raises(ApiError) as err:
        await create(allocator, service("mixed", clusterIP="10.96.0.12", clusterIPs=["10.96.0.13"]))
    assert problem(err.value)[0] == "spec.clusterIPs[0]"


async def test_headless_and_external_name_services_get_no_address(store: SQLiteStore) -> None:
    allocator = ServiceIPs("10.96.0.0/16", store)
    headless = await create(allocator, service("db", clusterIP="None"))
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["clusterIPs"] == ["None"]
    external = await create(
        allocator, service("ext", type="ExternalName", externalName="example.org", ports=[])
    )
    assert "clusterIP" not in external["spec"]


async def test_addresses_are_free_again_once_the_service_is_gone(store: SQLiteStore) -> None:
    allocator = ServiceIPs("10.96.0.0/16", store)
    await create(allocator, service("a", clusterIP="10.96.0.20"))
    with pytest.raises(ApiError):
        await create(allocator, service("b", clusterIP="10.96.0.20"))
    await store.delete("registry/core/services/ns/a")
    again = await create(allocator, service("b", clusterIP="10.96.0.20"))
    assert again["spec"]["clusterIP"] == "10.96.0.20"


async def test_an_update_keeps_the_address_and_a_new_clusterip_service_gets_one(
    store: SQLiteStore,
) -> None:
    allocator = ServiceIPs("10.96.0.0/16", store)
    stored = await create(allocator, service("a"))
    ip = stored["spec"]["clusterIP"]
    updated = {**stored, "spec": {**stored["spec"], "ports": [{"port": 81}]}}
    async with allocator.assigning(INFO, updated, stored):
        pass
    assert updated["spec"]["clusterIP"] == ip
    # ExternalName -> ClusterIP: the Service gets an address then.
    external = await create(
        allocator, service("e", type="ExternalName", externalName="example.org", ports=[])
    )
    now = {**external, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    async with allocator.assigning(INFO, now, external):
        pass
    assert ipaddress.ip_address(now["spec"]["clusterIP"]) in allocator.network
    assert now["spec"]["clusterIP"] != ip


def test_cidr_checks() -> None:
    assert str(parse_cidr("10.96.0.0/12")) == "10.96.0.0/12"
    for bad in ("10.96.0.1/16", "nonsense", "10.96.0.0/30"):
        with pytest.raises(ValueError):
            parse_cidr(bad)


def test_advertised_address() -> None:
    assert advertised_address("127.0.0.1", []) == "127.0.0.1"
    assert advertised_address("0.0.0.0", ["myhost", "192.0.2.7"]) == "192.0.2.7"
    assert advertised_address("0.0.0.0", ["myhost"]) == "127.0.0.1"
    assert advertised_address("192.0.2.8", ["192.0.2.7"]) == "192.0.2.8"


async def test_the_kubernetes_service_is_kept(store: SQLiteStore) -> None:
    allocator = ServiceIPs("10.96.0.0/16", store)
    await store.create(
        "registry/core/namespaces/default",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
    )
    assert await ensure_kubernetes_service(allocator, "127.0.0.1", 7443) == "10.96.0.1"
    svc = await store.get("registry/core/services/default/kubernetes")
    assert svc is not None
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 7443}
    ]
    endpoints = await store.get("registry/core/endpoints/default/kubernetes")
    assert endpoints is not None
    assert endpoints["subsets"] == [
        {
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}],
        }
    ]
    # A restart on another port repairs both, keeping the address.
    assert await ensure_kubernetes_service(allocator, "192.0.2.7", 8443) == "10.96.0.1"
    svc = await store.get("registry/core/services/default/kubernetes")
    endpoints = await store.get("registry/core/endpoints/default/kubernetes")
    assert svc is not None and endpoints is not None
    assert svc["spec"]["ports"][0]["targetPort"] == 8443
    assert endpoints["subsets"][0]["addresses"] == [{"ip": "192.0.2.7"}]
    # Deleted: made again.
    await store.delete("registry/core/services/default/kubernetes")
    assert await ensure_kubernetes_service(allocator, "192.0.2.7", 8443) == "10.96.0.1"
