"""Cluster IPs through the real API: every ClusterIP Service gets a unique address from the
service CIDR (10.96.0.0/16 by default), a requested free address is honoured, a taken or
out-of-range one is a 422 naming spec.clusterIP, an address is free again once its Service
is deleted, allocations survive a restart, and the API server keeps default/kubernetes."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest

from kumo.client import ApiException, Client
from kumo.model.core import Endpoints, Service
from kumo.model.registry import for_model
from tests.conftest import ApiServerFactory, ApiServerProcess, unique_name

SERVICE = for_model(Service)
ENDPOINTS = for_model(Endpoints)
RANGE = ipaddress.ip_network("10.96.0.0/16")


def body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec},
    }


def low_band_ip() -> str:
    # Dynamic allocation leaves the lowest 256 addresses alone: tests that ask for one
    # there do not collide with Services other tests create meanwhile.
    return str(RANGE[random.randint(100, 250)])


def refused(err: ApiException) -> tuple[int, str, list[str]]:
    causes = (err.status.get("details") or {}).get("causes") or []
    return err.code, err.status.get("reason", ""), [c.get("field") for c in causes]


def test_services_get_unique_addresses_from_the_range(client: Client, namespace: str) -> None:
    ips = set()
    for i in range(5):
        created = client.create_raw(body(f"s{i}"))
        ip = created["spec"]["clusterIP"]
        assert ipaddress.ip_address(ip) in RANGE
        assert created["spec"]["clusterIPs"] == [ip]
        ips.add(ip)
        assert client.get_raw(SERVICE, f"s{i}")["spec"]["clusterIP"] == ip
    assert len(ips) == 5
    # A dry run shows an address but keeps nothing.
    dry = client.create_raw(body("dry"), dry_run=True)
    assert ipaddress.ip_address(dry["spec"]["clusterIP"]) in RANGE
    with pytest.raises(ApiException) as err:
        client.get_raw(SERVICE, "dry")
    assert err.value.code == 404


def test_requested_addresses_and_conflicts(client: Client, namespace: str) -> None:
    ip = low_band_ip()
    created = client.create_raw(body("mine", clusterIP=ip))
    assert created["spec"]["clusterIP"] == ip and created["spec"]["clusterIPs"] == [ip]
    for wanted, text in (
        (ip, "provided IP is already allocated"),
        ("10.97.0.1", "provided IP is not in the valid range"),
        ("not-an-ip", "must be a valid IP address"),
    ):
        with pytest.raises(ApiException) as err:
            client.create_raw(body("other", clusterIP=wanted))
        assert refused(err.value) == (422, "Invalid", ["spec.clusterIP"])
        assert text in err.value.status["message"]
    # A headless Service has no address.
    headless = client.create_raw(body("db", clusterIP="None"))
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["clusterIPs"] == ["None"]
    # A replace that leaves the address out keeps it; changing it is refused.
    current = client.get_raw(SERVICE, "mine")
    current["spec"].pop("clusterIP")
    current["spec"].pop("clusterIPs")
    current["spec"]["ports"] = [{"port": 81}]
    assert client.replace_raw(current)["spec"]["clusterIP"] == ip
    # Deleted: the address is free for the next Service that asks.
    client.delete_raw(SERVICE, "mine")
    again = client.create_raw(body("again", clusterIP=ip))
    assert again["spec"]["clusterIP"] == ip


def test_the_kubernetes_service_points_at_the_api_server(
    client: Client, api_server: ApiServerProcess
) -> None:
    service = client.get_raw(SERVICE, "kubernetes", "default")
    assert service["spec"]["clusterIP"] == "10.96.0.1"
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_server.port}
    ]
    endpoints = client.get_raw(ENDPOINTS, "kubernetes", "default")
    assert endpoints["subsets"] == [
        {
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": "https", "port": api_server.port, "protocol": "TCP"}],
        }
    ]
    with pytest.raises(ApiException) as err:
        client.create_raw(body(unique_name("steal"), clusterIP="10.96.0.1"), "default")
    assert refused(err.value) == (422, "Invalid", ["spec.clusterIP"])


def test_allocations_survive_a_restart_and_the_kubernetes_service_is_repaired(
    api_server_factory: ApiServerFactory,
) -> None:
    server = api_server_factory.start()
    with Client(server.client_config()) as admin:
        ip = admin.create_raw(body("kept"))["spec"]["clusterIP"]
        admin.delete_raw(SERVICE, "kubernetes", "default")
    server.restart()
    with Client(server.client_config()) as admin:
        assert admin.get_raw(SERVICE, "kept")["spec"]["clusterIP"] == ip
        with pytest.raises(ApiException) as err:
            admin.create_raw(body("copy", clusterIP=ip))
        assert refused(err.value) == (422, "Invalid", ["spec.clusterIP"])
        # Made again at start.
        assert admin.get_raw(SERVICE, "kubernetes", "default")["spec"]["clusterIP"] == "10.96.0.1"
