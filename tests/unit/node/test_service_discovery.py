"""Service environment variables and the pod's resolv.conf, as the kubelet makes them."""

from __future__ import annotations

from typing import Any

from kumo.model.core import Pod, Service
from kumo.node.runtime import DNSConfig
from kumo.node.service_discovery import (
    env_name,
    pod_dns_config,
    service_env,
    services_for_env,
)


def service(name: str, namespace: str = "shop", ip: str = "10.96.3.4", **spec: Any) -> Service:
    body: dict[str, Any] = {"clusterIP": ip, "ports": [{"port": 80}], **spec}
    model = Service.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": body}
    )
    model.apply_defaults()
    return model


def pod(namespace: str = "shop", **spec: Any) -> Pod:
    model = Pod.model_validate(
        {
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
        }
    )
    model.spec.apply_defaults()
    return model


KUBERNETES = service(
    "kubernetes",
    "default",
    "10.96.0.1",
    ports=[{"name": "https", "port": 443, "targetPort": 7443}],
)


def test_env_names() -> None:
    assert env_name("my-web-svc") == "MY_WEB_SVC"
    assert env_name("redis") == "REDIS"


def test_variables_of_a_service_with_named_ports() -> None:
    web = service(
        "my-web",
        ports=[
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "metrics-port", "port": 9090, "protocol": "UDP"},
        ],
    )
    assert service_env([web]) == {
        "MY_WEB_SERVICE_HOST": "10.96.3.4",
        "MY_WEB_SERVICE_PORT": "80",
        "MY_WEB_SERVICE_PORT_HTTP": "80",
        "MY_WEB_SERVICE_PORT_METRICS_PORT": "9090",
        "MY_WEB_PORT": "tcp://10.96.3.4:80",
        "MY_WEB_PORT_80_TCP": "tcp://10.96.3.4:80",
        "MY_WEB_PORT_80_TCP_PROTO": "tcp",
        "MY_WEB_PORT_80_TCP_PORT": "80",
        "MY_WEB_PORT_80_TCP_ADDR": "10.96.3.4",
        "MY_WEB_PORT_9090_UDP": "udp://10.96.3.4:9090",
        "MY_WEB_PORT_9090_UDP_PROTO": "udp",
        "MY_WEB_PORT_9090_UDP_PORT": "9090",
        "MY_WEB_PORT_9090_UDP_ADDR": "10.96.3.4",
    }


def test_the_kubernetes_service_variables() -> None:
    env = service_env([KUBERNETES])
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"


def test_headless_and_external_name_services_have_no_variables() -> None:
    headless = service("db", ip="None")
    external = service("ext", ip="", type="ExternalName", externalName="example.org")
    assert service_env([headless, external]) == {}


def test_which_services_a_pod_sees() -> None:
    web = service("web")
    other = service("api", "elsewhere")
    default_web = service("web2", "default")
    everything = [KUBERNETES, web, other, default_web]
    names = lambda chosen: [(s.metadata.namespace, s.metadata.name) for s in chosen]  # noqa: E731
    assert names(services_for_env(everything, "shop", True)) == [
        ("default", "kubernetes"),
        ("shop", "web"),
    ]
    # enableServiceLinks: false keeps only the API server's.
    assert names(services_for_env(everything, "shop", False)) == [("default", "kubernetes")]
    assert names(services_for_env(everything, "default", True)) == [
        ("default", "kubernetes"),
        ("default", "web2"),
    ]
    # A namespace's own "kubernetes" Service wins over default's.
    mine = service("kubernetes", "shop", "10.96.9.9")
    chosen = services_for_env([KUBERNETES, mine], "shop", True)
    assert [s.spec.cluster_ip for s in chosen] == ["10.96.9.9"]


def test_cluster_first_dns() -> None:
    assert pod_dns_config(pod(), "10.96.0.10", "cluster.local") == DNSConfig(
        servers=("10.96.0.10",),
        searches=("shop.svc.cluster.local", "svc.cluster.local", "cluster.local"),
        options=("ndots:5",),
    )


def test_dns_config_adds_to_cluster_first() -> None:
    config = pod_dns_config(
        pod(
            dnsConfig={
                "nameservers": ["192.0.2.53"],
                "searches": ["example.org"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            }
        ),
        "10.96.0.10",
        "cluster.local",
    )
    assert config == DNSConfig(
        servers=("10.96.0.10", "192.0.2.53"),
        searches=("shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.org"),
        options=("ndots:2", "edns0"),
    )


def test_other_dns_policies() -> None:
    assert pod_dns_config(pod(dnsPolicy="Default"), "10.96.0.10", "cluster.local") is None
    none_policy = pod(dnsPolicy="None", dnsConfig={"nameservers": ["192.0.2.53"]})
    assert pod_dns_config(none_policy, "10.96.0.10", "cluster.local") == DNSConfig(
        servers=("192.0.2.53",)
    )
    # No cluster DNS configured: ClusterFirst falls back to the node's resolvers.
    assert pod_dns_config(pod(), "", "cluster.local") is None
    # Host network pods use the node's resolvers unless they ask for the cluster's.
    assert pod_dns_config(pod(hostNetwork=True), "10.96.0.10", "cluster.local") is None
    with_host_net = pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    config = pod_dns_config(with_host_net, "10.96.0.10", "cluster.local")
    assert config is not None and config.servers == ("10.96.0.10",)
