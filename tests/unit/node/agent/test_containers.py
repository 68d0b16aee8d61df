"""Container spec → runtime config: environment, resources, security."""

from __future__ import annotations

import pytest

from kumo.node.containers import (
    ConfigError,
    EnvContext,
    build_container_config,
    container_resources,
    expand,
    resolve_env,
    security_config,
    spec_hash,
)
from kumo.node.runtime import BindMount
from tests.unit.node.agent.conftest import FakeApi, make_pod


def test_expand() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)", env) == "1-two-$(C)"
    assert expand("$$(A) $$ $", env) == "$(A) $ $"


async def test_env_sources_precedence_and_expansion() -> None:
    api = FakeApi()
    api.add_config_map("cfg", {"color": "blue", "bad key": "x", "size": "L"})
    api.add_secret("sec", {"password": "hunter2", "user": "bob"})
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "envFrom": [
                    {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "sec"}},
                    {"configMapRef": {"name": "missing", "optional": True}},
                ],
                "env": [
                    {"name": "user", "value": "override-$(CFG_color)"},
                    {
                        "name": "PW",
                        "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}},
                    },
                    {
                        "name": "SIZE",
                        "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "size"}},
                    },
                    {
                        "name": "OPT",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}
                        },
                    },
                    {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {
                        "name": "SA",
                        "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
                    },
                    {
                        "name": "APP",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
                    },
                    {
                        "name": "CPU",
                        "valueFrom": {
                            "resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}
                        },
                    },
                    {
                        "name": "MEM_REQ",
                        "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}},
                    },
                    {
                        "name": "NODE_MEM",
                        "valueFrom": {
                            "resourceFieldRef": {
                                "containerName": "other",
                                "resource": "limits.memory",
                                "divisor": "1Mi",
                            }
                        },
                    },
                ],
                "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
            },
            {"name": "other", "image": "busybox"},
        ],
    )
    pod.metadata.labels = {"app": "web"}
    env = await resolve_env(
        pod,
        pod.spec.containers[0],
        api,
        EnvContext(pod_ip="10.88.0.9", host_ip="127.0.0.1", node_memory_bytes=2 << 30),
    )
    assert env == {
        "CFG_color": "blue",
        "CFG_size": "L",
        "password": "hunter2",
        "user": "override-blue",
        "PW": "hunter2",
        "SIZE": "L",
        "NAME": "p",
        "NS": "ns",
        "UID": pod.metadata.uid,
        "IP": "10.88.0.9",
        "HOST": "127.0.0.1",
        "NODE": "fake-node",
        "SA": "default",
        "APP": "web",
        "CPU": "250",
        "MEM_REQ": str(64 << 20),  # a limit without a request sets the request
        "NODE_MEM": "2048",  # no limit: the node's allocatable memory
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
            'secret "absent" not found',
        ),
        (
            [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}],
            "couldn't find key k in ConfigMap ns/cfg",
        ),
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}],
            "couldn't find key k in Secret ns/sec",
        ),
        (
            [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}],
            "unsupported fieldRef fieldPath 'spec.bogus'",
        ),
    ],
)
async def test_env_errors(env: list[dict[str, object]], message: str) -> None:
    api = FakeApi()
    api.add_config_map("cfg", {"a": "1"})
    api.add_secret("sec", {"a": "1"})
    pod = make_pod([{"name": "c", "image": "busybox", "env": env}])
    with pytest.raises(ConfigError) as caught:
        await resolve_env(pod, pod.spec.containers[0], api, EnvContext())
    assert str(caught.value) == message


async def test_env_from_missing_config_map_is_an_error() -> None:
    pod = make_pod(
        [{"name": "c", "image": "busybox", "envFrom": [{"configMapRef": {"name": "gone"}}]}]
    )
    with pytest.raises(ConfigError, match='configmap "gone" not found'):
        await resolve_env(pod, pod.spec.containers[0], FakeApi(), EnvContext())


def test_resources_map_to_cgroup_settings() -> None:
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "resources": {
                    "requests": {"cpu": "500m", "memory": "32Mi"},
                    "limits": {"cpu": "1500m", "memory": "128Mi"},
                },
            }
        ]
    )
    resources = container_resources(pod.spec.containers[0])
    assert resources.cpu_shares == 512
    assert resources.cpu_quota_us == 150_000 and resources.cpu_period_us == 100_000
    assert resources.memory_limit_bytes == 128 << 20
    assert resources.memory_reservation_bytes == 32 << 20
    unlimited = container_resources(make_pod([{"name": "c", "image": "x"}]).spec.containers[0])
    assert unlimited.memory_limit_bytes is None and unlimited.cpu_quota_us is None


def test_security_defaults_are_safe() -> None:
    pod = make_pod([{"name": "c", "image": "busybox"}])
    security = security_config(pod, pod.spec.containers[0], image_user="")
    assert security.no_new_privileges is True
    assert security.privileged is False
    assert security.cap_add == () and security.cap_drop == ()
    assert security.run_as_user is None


def test_security_settings_merge_pod_and_container_levels() -> None:
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "securityContext": {
                    "runAsUser": 1001,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"add": ["net_admin"], "drop": ["ALL"]},
                    "allowPrivilegeEscalation": True,
                },
            }
        ],
        securityContext={
            "runAsUser": 1000,
            "runAsGroup": 2000,
            "supplementalGroups": [5, 6],
            "fsGroup": 7,
        },
    )
    security = security_config(pod, pod.spec.containers[0], image_user="")
    assert security.run_as_user == 1001  # the container's setting wins
    assert security.run_as_group == 2000
    assert security.supplemental_groups == (5, 6, 7)
    assert security.read_only_rootfs
    assert security.cap_add == ("CAP_NET_ADMIN",) and security.cap_drop == ("ALL",)
    assert security.no_new_privileges is False


@pytest.mark.parametrize(
    ("context", "image_user", "message"),
    [
        ({"runAsNonRoot": True}, "", "image will run as root"),
        ({"runAsNonRoot": True}, "root", "image will run as root"),
        ({"runAsNonRoot": True}, "0:0", "image will run as root"),
        ({"runAsNonRoot": True}, "nobody", "image has non-numeric user (nobody)"),
        ({"runAsNonRoot": True, "runAsUser": 0}, "1000", "runAsUser breaks non-root policy"),
        ({"allowPrivilegeEscalation": False, "privileged": True}, "", "allowPrivilegeEscalation"),
        ({"capabilities": {"add": ["MADE_UP"]}}, "", "unknown capability 'MADE_UP'"),
    ],
)
def test_security_refusals(context: dict[str, object], image_user: str, message: str) -> None:
    pod = make_pod([{"name": "c", "image": "busybox", "securityContext": context}])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        security_config(pod, pod.spec.containers[0], image_user=image_user)


def test_privileged_containers() -> None:
    pod = make_pod([{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}])
    security = security_config(pod, pod.spec.containers[0], image_user="")
    assert security.privileged and security.no_new_privileges


def test_non_root_accepted_with_numeric_users() -> None:
    pod = make_pod([{"name": "c", "image": "busybox", "securityContext": {"runAsNonRoot": True}}])
    assert security_config(pod, pod.spec.containers[0], image_user="1000:1000").run_as_user is None
    pod.spec.containers[0].security_context.run_as_user = 5  # type: ignore[union-attr]
    assert security_config(pod, pod.spec.containers[0], image_user="").run_as_user == 5


def test_build_container_config() -> None:
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "command": ["sh", "-c"],
                "args": ["echo $(GREETING) $$(HOME)"],
                "workingDir": "/srv",
                "tty": True,
            }
        ]
    )
    container = pod.spec.containers[0]
    mounts = (BindMount("/tmp", "/data"),)
    config = build_container_config(
        pod,
        container,
        attempt=3,
        env={"GREETING": "hi"},
        mounts=mounts,
        image="busybox",
        image_user=None,
    )
    assert config.command == ("sh", "-c")
    assert config.args == ("echo hi $(HOME)",)
    assert config.working_dir == "/srv" and config.tty and not config.stdin
    assert config.attempt == 3 and config.mounts == mounts
    assert config.labels == {"kumo.dev/spec-hash": spec_hash(container)}
    # no command: the image's ENTRYPOINT and CMD stay
    plain = make_pod([{"name": "c", "image": "busybox"}])
    config = build_container_config(
        plain,
        plain.spec.containers[0],
        attempt=0,
        env={},
        mounts=(),
        image="busybox",
        image_user=None,
    )
    assert config.command is None and config.args is None


def test_spec_hash_changes_with_the_image_only() -> None:
    a = make_pod([{"name": "c", "image": "busybox:1"}]).spec.containers[0]
    b = make_pod([{"name": "c", "image": "busybox:1"}]).spec.containers[0]
    c = make_pod([{"name": "c", "image": "busybox:2"}]).spec.containers[0]
    assert spec_hash(a) == spec_hash(b) != spec_hash(c)
