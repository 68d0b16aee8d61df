"""The pod worker gives containers the Service variables of the Services that exist when
they start; the container's own variables win and may refer to them."""

from __future__ import annotations

from tests.unit.node.agent.conftest import Harness, make_pod


def _kubernetes(harness: Harness) -> None:
    harness.api.add_service(
        "kubernetes",
        {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
        namespace="default",
    )


async def _env_of(harness: Harness, name: str = "app") -> dict[str, str]:
    await harness.until(lambda s: s.get("phase") == "Running")
    [found] = [c for c in harness.runtime.host.containers.values() if c.config.name == name]
    return dict(found.config.env)


async def test_service_variables_and_overrides(harness: Harness) -> None:
    _kubernetes(harness)
    harness.api.add_service("web", {"clusterIP": "10.96.5.6", "ports": [{"port": 8080}]})
    harness.api.add_service("headless", {"clusterIP": "None", "ports": [{"port": 1}]})
    harness.api.add_service("far", {"clusterIP": "10.96.7.7", "ports": [{"port": 1}]}, "other")
    pod = make_pod(
        [
            {
                "name": "app",
                "image": "busybox",
                "env": [
                    {"name": "WEB_SERVICE_PORT", "value": "mine"},
                    {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)"},
                ],
            }
        ]
    )
    harness.run(pod)
    env = await _env_of(harness)
    assert env["WEB_SERVICE_HOST"] == "10.96.5.6"
    assert env["WEB_SERVICE_PORT"] == "mine"  # the container's own value wins
    assert env["URL"] == "http://10.96.5.6:mine"
    assert env["WEB_PORT_8080_TCP"] == "tcp://10.96.5.6:8080"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith(("HEADLESS_", "FAR_")) for k in env)


async def test_enable_service_links_false_keeps_only_kubernetes(harness: Harness) -> None:
    _kubernetes(harness)
    harness.api.add_service("web", {"clusterIP": "10.96.5.6", "ports": [{"port": 8080}]})
    harness.run(make_pod([{"name": "app", "image": "busybox"}], enableServiceLinks=False))
    env = await _env_of(harness)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(k.startswith("WEB_") for k in env)
