"""The pure parts of the runtime contract: names, capabilities, signals, resources, validation."""

from __future__ import annotations

import pytest

from kumo.node.runtime import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    LABEL_NODE,
    BindMount,
    ContainerConfig,
    HostAlias,
    InvalidConfig,
    PortMapping,
    Resources,
    SandboxConfig,
    SecurityConfig,
    TmpfsMount,
    VolumeMount,
    container_name,
    effective_capabilities,
    normalize_capability,
    normalize_signal,
    sandbox_name,
    validate_container_config,
    validate_sandbox_config,
)

UID = "0b0c5c4e-7d3a-4c1e-9a43-2f4f3c1b9d10"


def test_names_are_unique_per_pod_uid_and_attempt() -> None:
    assert sandbox_name("default", "web", UID) == f"kumo_default_web_{UID}"
    assert container_name("default", "web", UID, "app", 0) == f"kumo_default_web_app_{UID}_0"
    assert container_name("default", "web", UID, "app", 1) != container_name(
        "default", "web", UID, "app", 0
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("net_admin", "CAP_NET_ADMIN"),
        ("NET_ADMIN", "CAP_NET_ADMIN"),
        ("CAP_NET_ADMIN", "CAP_NET_ADMIN"),
        ("all", "ALL"),
    ],
)
def test_normalize_capability(given: str, expected: str) -> None:
    assert normalize_capability(given) == expected


def test_unknown_capability_is_invalid() -> None:
    with pytest.raises(InvalidConfig, match="unknown capability"):
        normalize_capability("FLY")


def test_default_capabilities_are_the_reduced_set() -> None:
    default = effective_capabilities((), ())
    assert default == frozenset(DEFAULT_CAPABILITIES)
    for dangerous in (
        "CAP_NET_RAW",
        "CAP_SYS_ADMIN",
        "CAP_MKNOD",
        "CAP_NET_ADMIN",
        "CAP_AUDIT_WRITE",
    ):
        assert dangerous not in default


def test_capabilities_add_and_drop() -> None:
    caps = effective_capabilities(("NET_ADMIN",), ("CHOWN", "kill"))
    assert "CAP_NET_ADMIN" in caps
    assert "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert "CAP_SETUID" in caps
    assert effective_capabilities(("NET_BIND_SERVICE",), ("ALL",)) == {"CAP_NET_BIND_SERVICE"}
    assert effective_capabilities(("ALL",), ()) == ALL_CAPABILITIES
    assert effective_capabilities((), ("ALL",), privileged=True) == ALL_CAPABILITIES


@pytest.mark.parametrize(
    ("given", "expected"), [("TERM", 15), ("SIGTERM", 15), ("sigkill", 9), ("15", 15), (2, 2)]
)
def test_normalize_signal(given: str | int, expected: int) -> None:
    assert normalize_signal(given) == expected


@pytest.mark.parametrize("bad", ["SIGNOPE", "0", 99, "-1"])
def test_bad_signal_is_invalid(bad: str | int) -> None:
    with pytest.raises(InvalidConfig):
        normalize_signal(bad)


def test_resources_from_kubernetes() -> None:
    resources = Resources.from_kubernetes(
        cpu_request_millis=250,
        cpu_limit_millis=500,
        memory_request_bytes=64 << 20,
        memory_limit_bytes=128 << 20,
    )
    assert resources.cpu_shares == 256
    assert resources.cpu_quota_us == 50_000
    assert resources.cpu_period_us == 100_000
    assert resources.memory_limit_bytes == 128 << 20
    assert resources.memory_reservation_bytes == 64 << 20
    tiny = Resources.from_kubernetes(cpu_request_millis=1, cpu_limit_millis=1)
    assert tiny.cpu_shares == 2
    assert tiny.cpu_quota_us == 1000
    assert Resources.from_kubernetes() == Resources()


def test_sandbox_hostname_defaults_to_pod_name() -> None:
    assert validate_sandbox_config(SandboxConfig("default", "web", UID)) == "web"
    long_name = "a" * 70
    assert validate_sandbox_config(SandboxConfig("default", long_name, UID)) == "a" * 63


@pytest.mark.parametrize(
    "config",
    [
        SandboxConfig("default", "web", UID, hostname="Not_A_Hostname"),
        SandboxConfig("default", "web", UID, labels={LABEL_NODE: "other"}),
        SandboxConfig("default", "web", UID, labels={"bad key!": "x"}),
        SandboxConfig("", "web", UID),
        SandboxConfig("default", "web/x", UID),
        SandboxConfig("default", "web", UID, ports=(PortMapping(80, 0),)),
        SandboxConfig("default", "web", UID, ports=(PortMapping(80, 8080), PortMapping(81, 8080))),
        SandboxConfig("default", "web", UID, host_aliases=(HostAlias("10.0.0.1", ()),)),
    ],
)
def test_invalid_sandbox_configs(config: SandboxConfig) -> None:
    with pytest.raises(InvalidConfig):
        validate_sandbox_config(config)


def test_valid_container_config_passes() -> None:
    validate_container_config(
        ContainerConfig(
            name="app",
            image="busybox",
            command=("sh",),
            env={"A": "1"},
            mounts=(
                BindMount("/etc/hostname", "/data/host", read_only=True),
                VolumeMount("data", "/data/volume"),
                TmpfsMount("/scratch"),
            ),
            resources=Resources(memory_limit_bytes=32 << 20, cpu_quota_us=50_000, pids_limit=64),
            security=SecurityConfig(run_as_user=1000, cap_add=("NET_ADMIN",)),
            stop_signal="SIGINT",
        )
    )


@pytest.mark.parametrize(
    "config",
    [
        ContainerConfig(name="", image="busybox"),
        ContainerConfig(name="app", image=""),
        ContainerConfig(name="app", image="busy box"),
        ContainerConfig(name="app", image="busybox", attempt=-1),
        ContainerConfig(name="app", image="busybox", env={"A=B": "x"}),
        ContainerConfig(name="app", image="busybox", mounts=(TmpfsMount("relative"),)),
        ContainerConfig(name="app", image="busybox", mounts=(TmpfsMount("/a"), TmpfsMount("/a"))),
        ContainerConfig(name="app", image="busybox", mounts=(BindMount("relative", "/a"),)),
        ContainerConfig(name="app", image="busybox", resources=Resources(memory_limit_bytes=1024)),
        ContainerConfig(name="app", image="busybox", resources=Resources(cpu_quota_us=10)),
        ContainerConfig(name="app", image="busybox", resources=Resources(cpu_shares=1)),
        ContainerConfig(name="app", image="busybox", resources=Resources(pids_limit=0)),
        ContainerConfig(name="app", image="busybox", security=SecurityConfig(run_as_user=-1)),
        ContainerConfig(name="app", image="busybox", security=SecurityConfig(cap_add=("FLY",))),
        ContainerConfig(name="app", image="busybox", stop_signal="SIGNOPE"),
        ContainerConfig(name="app", image="busybox", labels={"kumo.dev/pod-uid": "x"}),
    ],
)
def test_invalid_container_configs(config: ContainerConfig) -> None:
    with pytest.raises(InvalidConfig):
        validate_container_config(config)
