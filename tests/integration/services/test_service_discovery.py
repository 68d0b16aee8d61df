"""Pods reach Services by name: cluster IPs served by the node's service proxy, the cluster
DNS (``<svc>.<ns>.svc``, short names through the search path), Kubernetes' environment
variables, and the API server as ``https://kubernetes.default.svc``. Real processes and
real Podman throughout (see conftest)."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid

from kumo.model.core import Pod, Service
from kumo.model.registry import for_model
from tests.conftest import free_port
from tests.integration.services.conftest import (
    PYTHON,
    Cluster,
    client_pod,
    create_namespace,
    lo_addresses,
    run_to_completion,
    wait_endpoints,
    web_pod,
)

SERVICE = for_model(Service)


def _ns(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _web(cluster: Cluster, namespace: str, content: str) -> dict[str, object]:
    async with cluster.client(namespace) as client:
        await create_namespace(client, namespace)
        await client.create_raw(web_pod("web-0", cluster.node, content, {"app": "web"}), namespace)
        service = await client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            },
            namespace,
        )
        await wait_endpoints(client, "web", namespace)
        return service


async def test_pod_reaches_service_by_dns_search_path_and_env(cluster: Cluster) -> None:
    namespace = _ns("disc")
    content = f"hello-{uuid.uuid4().hex[:10]}"
    service = await _web(cluster, namespace, content)
    cluster_ip = service["spec"]["clusterIP"]  # type: ignore[index]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(cluster.cidr)
    assert cluster_ip in lo_addresses(cluster.cidr)
    script = (
        f"echo fqdn=$(wget -q -O - http://web.{namespace}.svc/); "
        "echo short=$(wget -q -O - http://web/); "
        "echo env=$(wget -q -O - http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/); "
        "env | grep -E '^(WEB|KUBERNETES)_' | sort; cat /etc/resolv.conf"
    )
    async with cluster.client(namespace) as client:
        pod, logs = await run_to_completion(
            client, client_pod("client", cluster.node, script), namespace
        )
    lines = logs.splitlines()
    assert f"fqdn={content}" in lines, logs
    assert f"short={content}" in lines, logs
    assert f"env={content}" in lines, logs
    assert f"WEB_SERVICE_HOST={cluster_ip}" in lines
    assert "WEB_SERVICE_PORT=80" in lines
    assert "WEB_SERVICE_PORT_HTTP=80" in lines
    assert f"WEB_PORT=tcp://{cluster_ip}:80" in lines
    assert f"WEB_PORT_80_TCP_ADDR={cluster_ip}" in lines
    assert any(line.startswith("KUBERNETES_SERVICE_HOST=") for line in lines)
    assert "KUBERNETES_SERVICE_PORT=443" in lines
    assert f"nameserver {cluster.dns_ip}" in lines
    assert any(
        line.startswith("search") and f"{namespace}.svc.cluster.local" in line for line in lines
    ), logs
    assert pod["status"]["phase"] == "Succeeded", logs


async def test_pods_reach_the_api_server_as_kubernetes_default_svc(cluster: Cluster) -> None:
    """TLS through the proxy to the API server, verified against the cluster CA for the
    name kubernetes.default.svc; without a token the API answers 401. (Python's client:
    busybox's built-in TLS offers only SHA-1 handshake signatures, which the server's
    OpenSSL refuses.)"""
    namespace = _ns("api")
    script = (
        "import ssl, urllib.request, urllib.error, socket\n"
        "ctx = ssl.create_default_context(cafile='/ca/ca.crt')\n"
        "print('address=' + socket.gethostbyname('kubernetes.default.svc'))\n"
        "try:\n"
        "    urllib.request.urlopen('https://kubernetes.default.svc/api/v1/namespaces', context=ctx)\n"
        "except urllib.error.HTTPError as err:\n"
        "    print('status=%d' % err.code)\n"
    )
    async with cluster.client(namespace) as client:
        await create_namespace(client, namespace)
        await client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "ca"},
                "data": {"ca.crt": cluster.server.ca_file.read_text()},
            },
            namespace,
        )
        kubernetes = await client.get_raw(SERVICE, "kubernetes", "default")
        manifest = client_pod(
            "api-client",
            cluster.node,
            "",
            image=PYTHON,
            volumes=[{"name": "ca", "configMap": {"name": "ca"}}],
        )
        manifest["spec"]["containers"][0].update(
            command=["python3", "-c", script],
            volumeMounts=[{"name": "ca", "mountPath": "/ca"}],
        )
        _, logs = await run_to_completion(client, manifest, namespace)
    cluster_ip = kubernetes["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) == ipaddress.ip_network(cluster.cidr)[1]
    lines = logs.splitlines()
    assert f"address={cluster_ip}" in lines, logs
    assert "status=401" in lines, logs


async def test_headless_services_unknown_names_and_service_links_off(cluster: Cluster) -> None:
    namespace = _ns("headless")
    content = f"pod-{uuid.uuid4().hex[:10]}"
    async with cluster.client(namespace) as client:
        await create_namespace(client, namespace)
        await client.create_raw(web_pod("db-0", cluster.node, content, {"app": "db"}), namespace)
        await client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "db"},
                "spec": {
                    "clusterIP": "None",
                    "selector": {"app": "db"},
                    "ports": [{"name": "http", "port": 8080}],
                },
            },
            namespace,
        )
        await wait_endpoints(client, "db", namespace)
        pod = await client.get_raw(for_model(Pod), "db-0", namespace)
        pod_ip = pod["status"]["podIP"]
        script = (
            f"nslookup db.{namespace}.svc.cluster.local 2>&1; "
            "echo direct=$(wget -q -O - http://db:8080/); "
            f"nslookup nothing.{namespace}.svc.cluster.local 2>&1; "
            "env | grep -E '^(DB|KUBERNETES)_SERVICE' | sort"
        )
        _, logs = await run_to_completion(
            client,
            client_pod("lookup", cluster.node, script, enableServiceLinks=False),
            namespace,
        )
    # A headless name resolves to the pod itself, which answers on its container port.
    assert f"Address: {pod_ip}" in logs, logs
    assert f"direct={content}" in logs.splitlines(), logs
    assert "NXDOMAIN" in logs, logs
    # enableServiceLinks: false -> only the API server's variables.
    assert any(line.startswith("KUBERNETES_SERVICE_HOST=") for line in logs.splitlines())
    assert "DB_SERVICE" not in logs


async def test_connections_spread_over_endpoints_and_deleted_services_go_away(
    cluster: Cluster,
) -> None:
    namespace = _ns("spread")
    async with cluster.client(namespace) as client:
        await create_namespace(client, namespace)
        for i in range(2):
            await client.create_raw(
                web_pod(f"web-{i}", cluster.node, f"replica-{i}", {"app": "web"}), namespace
            )
        service = await client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
            namespace,
        )
        await wait_endpoints(client, "web", namespace, count=2)
        script = "for i in 1 2 3 4; do echo got=$(wget -q -O - http://web/); done"
        _, logs = await run_to_completion(
            client, client_pod("spread", cluster.node, script), namespace
        )
        got = [line for line in logs.splitlines() if line.startswith("got=")]
        assert sorted(set(got)) == ["got=replica-0", "got=replica-1"], logs
        # Deleting the Service takes its address off the machine.
        cluster_ip = service["spec"]["clusterIP"]
        assert cluster_ip in lo_addresses(cluster.cidr)
        await client.delete_raw(SERVICE, "web", namespace)
        deadline = asyncio.get_running_loop().time() + 20
        while cluster_ip in lo_addresses(cluster.cidr):
            assert asyncio.get_running_loop().time() < deadline, "address still on lo"
            await asyncio.sleep(0.1)


async def test_a_second_agent_takes_the_proxy_over_when_the_first_stops(cluster: Cluster) -> None:
    """(Last in the module: it stops the module's first agent.)"""
    async with cluster.client("default") as client:
        kubernetes = await client.get_raw(SERVICE, "kubernetes", "default")
    second = cluster.agents.start(
        "--service-proxy",
        "--service-cidr",
        cluster.cidr,
        "--cluster-dns",
        cluster.dns_ip,
        "--kubelet-port",
        str(free_port()),
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while "another agent runs the service proxy" not in second.log_tail(200):
        assert loop.time() < deadline, second.log_tail()
        await asyncio.sleep(0.1)
    cluster.agent.stop()
    deadline = loop.time() + 30
    while "service proxy running" not in second.log_tail(200) or not {
        cluster.dns_ip,
        kubernetes["spec"]["clusterIP"],
    } <= lo_addresses(cluster.cidr):
        assert loop.time() < deadline, second.log_tail()
        await asyncio.sleep(0.1)
