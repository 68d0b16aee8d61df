"""The Endpoints controller against the real API server: addresses come from the ports the
(stand-in) node agent publishes on the node address."""

from __future__ import annotations

import asyncio
from typing import Any

from kumo.client import AsyncClient

from .conftest import Kubelets
from .helpers import ENDPOINTS, POD, SERVICE, get

Wait = Any


def web_pod(
    name: str,
    *,
    image: str = "kumo.test/web:1",
    host_port: int | None = None,
    port: int = 8080,
    port_name: str = "http",
) -> dict[str, Any]:
    container_port: dict[str, Any] = {"name": port_name, "containerPort": port}
    if host_port is not None:
        container_port["hostPort"] = host_port
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": image, "ports": [container_port]}],
        },
    }


def service(name: str, target: int | str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": target}],
            **spec,
        },
    }


async def published(client: AsyncClient, namespace: str, name: str) -> int:
    pod = await client.get_raw(POD, name, namespace)
    ports = (pod.get("status") or {}).get("publishedPorts") or []
    assert ports, f"{name} has no published ports yet"
    port: int = ports[0]["hostPort"]
    return port


def addresses(endpoints: dict[str, Any] | None) -> tuple[dict[str, int], dict[str, int]]:
    """(ready pod name -> port, not-ready pod name -> port)."""
    ready: dict[str, int] = {}
    not_ready: dict[str, int] = {}
    for subset in (endpoints or {}).get("subsets") or []:
        (port,) = subset["ports"]
        for address in subset.get("addresses") or []:
            ready[address["targetRef"]["name"]] = port["port"]
        for address in subset.get("notReadyAddresses") or []:
            not_ready[address["targetRef"]["name"]] = port["port"]
    return ready, not_ready


def endpoints_are(
    client: AsyncClient, namespace: str, name: str, ready: set[str], not_ready: set[str]
) -> Any:
    async def check() -> Any:
        current = await get(client, ENDPOINTS, name, namespace)
        have_ready, have_not_ready = addresses(current)
        return set(have_ready) == ready and set(have_not_ready) == not_ready and current

    return check


async def running(client: AsyncClient, namespace: str, *names: str) -> None:
    for name in names:
        for _ in range(200):
            pod = await client.get_raw(POD, name, namespace)
            if (pod.get("status") or {}).get("publishedPorts"):
                break
            await asyncio.sleep(0.05)


async def test_ready_and_not_ready_pods_with_a_named_target_port(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    kubelet = await kubelets.start()
    for name, image in (
        ("a", "kumo.test/web:1"),
        ("b", "kumo.test/web:1"),
        ("c", "kumo.test/never-ready"),
    ):
        await async_client.create_raw(web_pod(name, image=image), namespace)
    # Left out: a pod without a port of the target port's name, and a Ready pod whose agent
    # published no port for it.
    await async_client.create_raw(web_pod("other", port=9090, port_name="metrics"), namespace)
    await async_client.create_raw(web_pod("unpublished", image="kumo.test/pending"), namespace)
    await running(async_client, namespace, "a", "b", "c", "other")
    unpublished = kubelet.running_status(
        await async_client.get_raw(POD, "unpublished", namespace), ready=True
    )
    unpublished["publishedPorts"] = []
    await async_client.patch_raw(
        POD, "unpublished", {"status": unpublished}, namespace, sub="status"
    )
    async with start_controllers("endpoints"):
        await async_client.create_raw(service("web", "http"), namespace)
        current = await wait_for(endpoints_are(async_client, namespace, "web", {"a", "b"}, {"c"}))
        ports = {name: await published(async_client, namespace, name) for name in ("a", "b", "c")}
        ready, not_ready = addresses(current)
        assert ready == {"a": ports["a"], "b": ports["b"]}
        assert not_ready == {"c": ports["c"]}
        # Each pod has its own host port, so each sits in its own subset.
        assert len(current["subsets"]) == 3
        assert current["metadata"]["labels"] == {"team": "a"}
        for subset in current["subsets"]:
            assert subset["ports"][0]["name"] == "http"
            assert subset["ports"][0]["protocol"] == "TCP"
            for address in subset.get("addresses", []) + subset.get("notReadyAddresses", []):
                assert address["ip"] == "127.0.0.1"
                assert address["nodeName"] == kubelet.node
                assert address["targetRef"]["kind"] == "Pod"
                pod = await async_client.get_raw(POD, address["targetRef"]["name"], namespace)
                assert address["targetRef"]["uid"] == pod["metadata"]["uid"]

        # Readiness changes move addresses between the lists.
        await kubelet.set_ready("a", False)
        await kubelet.set_ready("c", True)
        await wait_for(endpoints_are(async_client, namespace, "web", {"b", "c"}, {"a"}))

        # A deleted pod leaves the endpoints.
        await async_client.delete_raw(POD, "b", namespace)
        await wait_for(endpoints_are(async_client, namespace, "web", {"c"}, {"a"}))

        # Deleting the Service deletes its Endpoints.
        await async_client.delete_raw(SERVICE, "web", namespace)

        async def gone() -> bool:
            return await get(async_client, ENDPOINTS, "web", namespace) is None

        await wait_for(gone)


async def test_numeric_target_port_shared_host_port_and_publish_not_ready(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    # Two nodes publish the same host port: their pods share one subset.
    one = await kubelets.start(node=f"{namespace}-one", bind=False, host_ip="127.0.0.1")
    two = await kubelets.start(node=f"{namespace}-two", bind=False, host_ip="127.0.0.2")
    for name, kubelet, image in (
        ("a", one, "kumo.test/web:1"),
        ("b", two, "kumo.test/never-ready"),
    ):
        pod = web_pod(name, image=image, host_port=31080)
        pod["spec"]["nodeName"] = kubelet.node
        await async_client.create_raw(pod, namespace)
    await running(async_client, namespace, "a", "b")
    async with start_controllers("endpoints"):
        await async_client.create_raw(service("num", 8080), namespace)
        current = await wait_for(endpoints_are(async_client, namespace, "num", {"a"}, {"b"}))
        assert len(current["subsets"]) == 1
        (subset,) = current["subsets"]
        assert subset["ports"] == [{"name": "http", "port": 31080, "protocol": "TCP"}]
        assert subset["addresses"][0]["ip"] == "127.0.0.1"
        assert subset["notReadyAddresses"][0]["ip"] == "127.0.0.2"

        await async_client.create_raw(
            service("all", 8080, publishNotReadyAddresses=True) | {"metadata": {"name": "all"}},
            namespace,
        )
        everything = await wait_for(
            endpoints_are(async_client, namespace, "all", {"a", "b"}, set())
        )
        assert [a["ip"] for a in everything["subsets"][0]["addresses"]] == [
            "127.0.0.1",
            "127.0.0.2",
        ]


async def test_unchanged_inputs_cause_no_writes(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    await async_client.create_raw(web_pod("a"), namespace)
    await running(async_client, namespace, "a")
    async with start_controllers("endpoints") as manager:
        await async_client.create_raw(service("web", "http"), namespace)
        first = await wait_for(endpoints_are(async_client, namespace, "web", {"a"}, set()))
        # Pod changes that do not concern endpoints, and a service change that does not
        # change the result: nothing is written.
        controller = manager.controller("endpoints")
        before = controller.reconciles
        await async_client.patch_raw(
            POD, "a", {"metadata": {"annotations": {"note": "x"}}}, namespace
        )
        await async_client.patch_raw(
            SERVICE, "web", {"metadata": {"annotations": {"note": "y"}}}, namespace
        )
        await wait_for(lambda: _reconciled_since(controller, before))
        await asyncio.sleep(0.3)
        again = await async_client.get_raw(ENDPOINTS, "web", namespace)
        assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def _reconciled_since(controller: Any, count: int) -> bool:
    return bool(controller.reconciles > count)
