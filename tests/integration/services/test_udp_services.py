"""UDP Service ports: a pod sends datagrams to ``<svc>.<ns>.svc:53`` and gets the answers
of the Service's endpoints back from the cluster IP; each client port is a session with
one endpoint, and sessions from different client ports go round-robin. Real processes and
real Podman throughout (see conftest); the pods run Python (busybox's ``nc`` here has no
UDP mode)."""

from __future__ import annotations

import uuid
from typing import Any

from kumo.model.core import Service
from kumo.model.registry import for_model
from tests.integration.services.conftest import (
    PYTHON,
    Cluster,
    client_pod,
    create_namespace,
    run_to_completion,
    wait_endpoints,
)

SERVICE = for_model(Service)
ECHO_PORT = 5353

# Answers every datagram with "<name>:<datagram>".
ECHO_SERVER = f"""
import socket, sys
name = sys.argv[1].encode()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", {ECHO_PORT}))
print("listening", flush=True)
while True:
    data, peer = sock.recvfrom(65535)
    sock.sendto(name + b":" + data, peer)
"""

# argv: host port sockets. Prints the ECHO_* variables; then each socket (a client port of
# its own) asks twice and prints "reply=<socket>:<answer>:<from ip>:<from port>".
ECHO_CLIENT = """
import os, socket, sys
for key in sorted(os.environ):
    if key.startswith("ECHO_"):
        print(key + "=" + os.environ[key])
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
address = (socket.gethostbyname(host), port)
print("address=" + address[0], flush=True)

def ask(sock, text):
    for _ in range(30):  # the first datagrams may come before the server listens
        sock.sendto(text, address)
        try:
            return sock.recvfrom(65535)
        except socket.timeout:
            continue
    return None

sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
for i, sock in enumerate(sockets):
    sock.settimeout(1.0)
    for j in range(2):
        answer = ask(sock, b"m%d-%d" % (i, j))
        if answer is None:
            print("reply=%d:none" % i, flush=True)
        else:
            data, sender = answer
            print("reply=%d:%s:%s:%d" % (i, data.decode(), sender[0], sender[1]), flush=True)
"""


def _echo_pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "echo"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "echo",
                    "image": PYTHON,
                    "command": ["python3", "-u", "-c", ECHO_SERVER, name],
                    "ports": [
                        {"name": "echo", "containerPort": ECHO_PORT, "protocol": "UDP"},
                    ],
                }
            ],
        },
    }


async def _echo_service(cluster: Cluster, namespace: str, replicas: int) -> dict[str, Any]:
    async with cluster.client(namespace) as client:
        await create_namespace(client, namespace)
        for i in range(replicas):
            await client.create_raw(_echo_pod(f"echo-{i}", cluster.node), namespace)
        service = await client.create_raw(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "echo"},
                "spec": {
                    "selector": {"app": "echo"},
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "echo"}],
                },
            },
            namespace,
        )
        await wait_endpoints(client, "echo", namespace, count=replicas)
        return service


async def _ask(cluster: Cluster, namespace: str, pod: str, host: str, count: int) -> list[str]:
    manifest = client_pod(pod, cluster.node, "", image=PYTHON)
    container = manifest["spec"]["containers"][0]
    container["command"] = ["python3", "-u", "-c", ECHO_CLIENT, host, "53", str(count)]
    async with cluster.client(namespace) as client:
        pod_obj, logs = await run_to_completion(client, manifest, namespace)
    assert pod_obj["status"]["phase"] == "Succeeded", logs
    return logs.splitlines()


async def test_a_pod_gets_answers_from_a_udp_service_by_name(cluster: Cluster) -> None:
    namespace = f"udp-{uuid.uuid4().hex[:8]}"
    service = await _echo_service(cluster, namespace, replicas=1)
    cluster_ip = service["spec"]["clusterIP"]
    lines = await _ask(cluster, namespace, "client", f"echo.{namespace}.svc", count=2)
    text = "\n".join(lines)
    assert f"address={cluster_ip}" in lines, text
    # Every datagram answered by the endpoint, from the cluster IP and Service port.
    for i in range(2):
        for j in range(2):
            assert f"reply={i}:echo-0:m{i}-{j}:{cluster_ip}:53" in lines, text
    # The UDP link variables.
    assert f"ECHO_SERVICE_HOST={cluster_ip}" in lines, text
    assert "ECHO_SERVICE_PORT_DNS=53" in lines, text
    assert f"ECHO_PORT=udp://{cluster_ip}:53" in lines, text
    assert f"ECHO_PORT_53_UDP=udp://{cluster_ip}:53" in lines, text
    assert "ECHO_PORT_53_UDP_PROTO=udp" in lines, text
    assert "ECHO_PORT_53_UDP_PORT=53" in lines, text
    assert f"ECHO_PORT_53_UDP_ADDR={cluster_ip}" in lines, text


async def test_udp_sessions_from_different_client_ports_spread_over_endpoints(
    cluster: Cluster,
) -> None:
    namespace = f"udp-rr-{uuid.uuid4().hex[:8]}"
    await _echo_service(cluster, namespace, replicas=2)
    lines = await _ask(cluster, namespace, "spread", "echo", count=6)
    text = "\n".join(lines)
    answers: dict[int, set[str]] = {}
    for line in lines:
        if line.startswith("reply="):
            index, _, rest = line.removeprefix("reply=").partition(":")
            assert rest != "none", text
            answers.setdefault(int(index), set()).add(rest.split(":")[0])
    assert sorted(answers) == list(range(6)), text
    # One endpoint per client port (its session), and both endpoints over the client ports.
    assert all(len(names) == 1 for names in answers.values()), text
    assert set().union(*answers.values()) == {"echo-0", "echo-1"}, text
