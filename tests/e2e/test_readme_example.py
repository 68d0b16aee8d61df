"""The README's walk-through with its own files (examples/web.yaml, examples/web-v2.yaml):
apply, wait for the rollout, reach the app through the gateway, roll out v2, look at the
history, undo, see what the pods use (kumo top)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import STATS_INTERVAL, Platform, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.slow]

EXAMPLES = REPO / "examples"
ANSWER = re.compile(r"^hello from (web-[a-z0-9]+-[a-z0-9]+) \((v\d)\)$")


def answers(platform: Platform, host: str, count: int) -> list[tuple[str, str]]:
    """(pod, version) of ``count`` requests through the gateway."""
    seen = []
    for _ in range(count):
        response = httpx.get(f"{platform.gateway_url}/", headers={"Host": host}, timeout=10)
        assert response.status_code == 200, response.text
        match = ANSWER.match(response.text.strip())
        assert match, response.text
        seen.append((match.group(1), match.group(2)))
    return seen


def test_the_readme_walk_through(platform: Platform) -> None:
    namespace = "readme"
    platform.kumo("create", "namespace", namespace)
    host = f"web.{namespace}.localhost"

    out = platform.kumo("apply", "-f", str(EXAMPLES / "web.yaml"), "-n", namespace).stdout
    assert "deployment.apps/web created" in out and "service/web created" in out
    platform.kumo("rollout", "status", "deploy/web", "-n", namespace, "--timeout", "180s")
    wait_until(
        lambda: httpx.get(f"{platform.gateway_url}/", headers={"Host": host}).status_code == 200,
        30,
        "the app through the gateway",
    )
    first = answers(platform, host, 9)
    assert {version for _, version in first} == {"v1"}
    # round-robin over the three ready replicas
    assert len({pod for pod, _ in first}) == 3

    # path routing reaches the same Service
    by_path = httpx.get(f"{platform.gateway_url}/s/{namespace}/web/", timeout=10)
    assert by_path.status_code == 200 and ANSWER.match(by_path.text.strip())

    out = platform.kumo("apply", "-f", str(EXAMPLES / "web-v2.yaml"), "-n", namespace).stdout
    assert "deployment.apps/web configured" in out
    platform.kumo("rollout", "status", "deploy/web", "-n", namespace, "--timeout", "180s")
    wait_until(
        lambda: {v for _, v in answers(platform, host, 6)} == {"v2"}, 30, "only v2 answering"
    )
    history = platform.kumo("rollout", "history", "deploy/web", "-n", namespace).stdout
    assert re.search(r"^1\s+v1$", history, re.MULTILINE), history
    assert re.search(r"^2\s+v2$", history, re.MULTILINE), history

    platform.kumo("rollout", "undo", "deploy/web", "-n", namespace)
    platform.kumo("rollout", "status", "deploy/web", "-n", namespace, "--timeout", "180s")
    wait_until(
        lambda: {v for _, v in answers(platform, host, 6)} == {"v1"}, 30, "v1 back after undo"
    )

    # kumo top: the agent of kumo up samples usage every STATS_INTERVAL s; a pod shows once
    # two samples of it exist
    def top_rows() -> list[list[str]]:
        out = platform.kumo("top", "pods", "-n", namespace, "-l", "app=web", "--no-headers")
        return [line.split() for line in out.stdout.splitlines() if line.strip()]

    rows = wait_until(
        lambda: len(top_rows()) == 3 and top_rows(), 15 * STATS_INTERVAL, "kumo top pods"
    )
    for name, cpu, memory in rows:
        assert name.startswith("web-") and cpu.endswith("m") and memory.endswith("Mi"), rows
        assert int(memory[:-2]) >= 1, rows  # a Python web server holds some MiB
    nodes = platform.kumo("top", "nodes").stdout.splitlines()
    assert nodes[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert platform.node in {row.split()[0] for row in nodes[1:]}, nodes

    platform.kumo("delete", "-f", str(EXAMPLES / "web.yaml"), "-n", namespace)
