"""``kumo get quota,limits``, ``kumo describe quota|limits|secret`` through the real command."""

from __future__ import annotations

import base64
import os
import subprocess
from typing import Any

from kumo.client import AsyncClient
from tests.conftest import ApiServerProcess, _kumo_command

from .conftest import QUOTA, pod, quota

Wait = Any


def kumo(server: ApiServerProcess, *args: str) -> str:
    env = dict(os.environ, KUMOCONFIG=str(server.kubeconfig_path))
    done = subprocess.run(
        [*_kumo_command(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_get_and_describe_quota_and_limits(
    api_server: ApiServerProcess,
    async_client: AsyncClient,
    namespace: str,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await async_client.create_raw(
        quota("team-quota", {"pods": "3", "requests.cpu": "2", "limits.cpu": "4"}), namespace
    )
    await async_client.create_raw(
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "defaults"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "500m"},
                        "defaultRequest": {"cpu": "250m"},
                        "max": {"cpu": "1"},
                    }
                ]
            },
        },
        namespace,
    )
    async with start_controllers("resourcequota"):
        await async_client.create_raw(pod("web"), namespace)

        async def counted() -> Any:
            current = await async_client.get_raw(QUOTA, "team-quota", namespace)
            return (current.get("status") or {}).get("used", {}).get("pods") == "1"

        await wait_for(counted)
    table = kumo(api_server, "get", "quota,limits", "-n", namespace)
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert lines[1].startswith("resourcequota/team-quota")
    assert "pods: 1/3, requests.cpu: 250m/2" in lines[1]
    assert lines[1].rstrip().endswith("limits.cpu: 500m/4")
    assert lines[3].split() == ["NAME", "CREATED", "AT"]
    assert lines[4].startswith("limitrange/defaults")
    page = kumo(api_server, "describe", "quota", "team-quota", "-n", namespace)
    rows = [line.split() for line in page.splitlines()]
    assert ["Resource", "Used", "Hard"] in rows
    assert ["pods", "1", "3"] in rows
    assert ["requests.cpu", "250m", "2"] in rows
    assert ["limits.cpu", "500m", "4"] in rows
    page = kumo(api_server, "describe", "limits", "defaults", "-n", namespace)
    assert ["Container", "cpu", "-", "1", "250m", "500m", "-"] in [
        line.split() for line in page.splitlines()
    ]


def test_describe_secret_shows_sizes_never_values(
    api_server: ApiServerProcess, namespace: str, tmp_path: Any
) -> None:
    value = "s3cr3t-value-for-describe"
    manifest = tmp_path / "secret.yaml"
    manifest.write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {value}\n"
    )
    kumo(api_server, "apply", "-f", str(manifest), "-n", namespace)
    page = kumo(api_server, "describe", "secret", "db", "-n", namespace)
    assert "password:  25 bytes" in page
    encoded = base64.b64encode(value.encode()).decode()
    assert value not in page and encoded not in page and encoded[:20] not in page
    # get -o yaml shows the data, as kubectl does.
    assert encoded in kumo(api_server, "get", "secret", "db", "-n", namespace, "-o", "yaml")
