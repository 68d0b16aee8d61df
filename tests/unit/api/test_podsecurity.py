"""Pod Security Standards, table-driven: which pods each level allows, and the exact
Kubernetes wording of what it refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kumo.platform.api import podsecurity
from kumo.platform.api.podsecurity import Policy, check, label_problems, policies, summary

Obj = dict[str, Any]

RESTRICTED_CONTAINER_SC: Obj = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def spec(*containers: Obj, **fields: Any) -> Obj:
    return {"containers": list(containers) or [{"name": "c", "image": "busybox"}], **fields}


def container(name: str = "c", sc: Obj | None = None, **fields: Any) -> Obj:
    out: Obj = {"name": name, "image": "busybox", **fields}
    if sc is not None:
        out["securityContext"] = sc
    return out


def restricted_container(name: str = "c", **extra: Any) -> Obj:
    sc = copy.deepcopy(RESTRICTED_CONTAINER_SC)
    sc.update(extra)
    return container(name, sc)


def reasons(level: str, pod_spec: Obj, meta: Obj | None = None) -> list[str]:
    return [v.reason for v in check(level, meta or {}, pod_spec)]


def messages(level: str, pod_spec: Obj, meta: Obj | None = None) -> list[str]:
    return [str(v) for v in check(level, meta or {}, pod_spec)]


# ---- baseline -------------------------------------------------------------------------------

BASELINE_ALLOWED: list[tuple[str, Obj, Obj]] = [
    ("plain pod", spec(), {}),
    ("explicit privileged false", spec(container(sc={"privileged": False})), {}),
    (
        "default capabilities added",
        spec(
            container(sc={"capabilities": {"add": ["CHOWN", "KILL", "NET_BIND_SERVICE", "SETUID"]}})
        ),
        {},
    ),
    ("capabilities dropped", spec(container(sc={"capabilities": {"drop": ["ALL"]}})), {}),
    (
        "emptyDir, configMap, secret volumes",
        spec(
            volumes=[
                {"name": "a", "emptyDir": {}},
                {"name": "b", "configMap": {"name": "x"}},
                {"name": "c", "secret": {"secretName": "s"}},
            ]
        ),
        {},
    ),
    ("container port without hostPort", spec(container(ports=[{"containerPort": 80}])), {}),
    ("hostPort 0", spec(container(ports=[{"containerPort": 80, "hostPort": 0}])), {}),
    ("host namespaces false", spec(hostNetwork=False, hostPID=False, hostIPC=False), {}),
    (
        "safe sysctls",
        spec(
            securityContext={
                "sysctls": [
                    {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"},
                    {"name": "kernel.shm_rmid_forced", "value": "1"},
                ]
            }
        ),
        {},
    ),
    (
        "seccomp RuntimeDefault",
        spec(securityContext={"seccompProfile": {"type": "RuntimeDefault"}}),
        {},
    ),
    (
        "seccomp Localhost on a container",
        spec(container(sc={"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}})),
        {},
    ),
    ("procMount Default", spec(container(sc={"procMount": "Default"})), {}),
    (
        "AppArmor runtime/default",
        spec(),
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "runtime/default"}},
    ),
    (
        "AppArmor localhost profile",
        spec(),
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "localhost/mine"}},
    ),
    (
        "SELinux container_t",
        spec(container(sc={"seLinuxOptions": {"type": "container_t", "level": "s0:c1"}})),
        {},
    ),
    ("runs as root (allowed by baseline)", spec(container(sc={"runAsUser": 0})), {}),
    (
        "allowPrivilegeEscalation true (allowed by baseline)",
        spec(container(sc={"allowPrivilegeEscalation": True})),
        {},
    ),
]


@pytest.mark.parametrize(
    ("case", "pod_spec", "meta"), BASELINE_ALLOWED, ids=[c[0] for c in BASELINE_ALLOWED]
)
def test_baseline_allows(case: str, pod_spec: Obj, meta: Obj) -> None:
    assert check("baseline", meta, pod_spec) == []


BASELINE_REFUSED: list[tuple[str, Obj, Obj, str]] = [
    (
        "privileged container",
        spec(container(sc={"privileged": True})),
        {},
        'privileged (container "c" must not set securityContext.privileged=true)',
    ),
    (
        "privileged init container and container",
        spec(
            container("app", sc={"privileged": True}),
            initContainers=[container("init", sc={"privileged": True})],
        ),
        {},
        'privileged (containers "init", "app" must not set securityContext.privileged=true)',
    ),
    ("hostNetwork", spec(hostNetwork=True), {}, "host namespaces (hostNetwork=true)"),
    (
        "all host namespaces",
        spec(hostNetwork=True, hostPID=True, hostIPC=True),
        {},
        "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)",
    ),
    (
        "hostPath volume",
        spec(volumes=[{"name": "host", "hostPath": {"path": "/"}}]),
        {},
        'hostPath volumes (volume "host")',
    ),
    (
        "two hostPath volumes",
        spec(
            volumes=[
                {"name": "a", "hostPath": {"path": "/a"}},
                {"name": "b", "hostPath": {"path": "/b"}},
            ]
        ),
        {},
        'hostPath volumes (volumes "a", "b")',
    ),
    (
        "hostPort",
        spec(container(ports=[{"containerPort": 80, "hostPort": 8080}])),
        {},
        'hostPort (container "c" uses hostPort 8080)',
    ),
    (
        "two hostPorts",
        spec(
            container(
                ports=[
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 443, "hostPort": 8443},
                ]
            )
        ),
        {},
        'hostPort (container "c" uses hostPorts 8080, 8443)',
    ),
    (
        "added capability",
        spec(container(sc={"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}})),
        {},
        'non-default capabilities (container "c" must not include "NET_ADMIN" in securityContext.capabilities.add)',
    ),
    (
        "SYS_ADMIN and NET_RAW",
        spec(container(sc={"capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]}})),
        {},
        'non-default capabilities (container "c" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)',
    ),
    (
        "unsafe sysctl",
        spec(securityContext={"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}),
        {},
        "forbidden sysctls (net.core.somaxconn)",
    ),
    (
        "pod seccomp Unconfined",
        spec(securityContext={"seccompProfile": {"type": "Unconfined"}}),
        {},
        'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")',
    ),
    (
        "container seccomp Unconfined",
        spec(container(sc={"seccompProfile": {"type": "Unconfined"}})),
        {},
        'seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")',
    ),
    (
        "procMount Unmasked",
        spec(container(sc={"procMount": "Unmasked"})),
        {},
        'procMount (container "c" must not set securityContext.procMount to "Unmasked")',
    ),
    (
        "AppArmor unconfined annotation",
        spec(),
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
        'forbidden AppArmor profile (annotation container.apparmor.security.beta.kubernetes.io/c="unconfined")',
    ),
    (
        "AppArmor Unconfined field",
        spec(container(sc={"appArmorProfile": {"type": "Unconfined"}})),
        {},
        'forbidden AppArmor profile (container "c" must not set securityContext.appArmorProfile.type to "Unconfined")',
    ),
    (
        "SELinux custom type",
        spec(container(sc={"seLinuxOptions": {"type": "spc_t"}})),
        {},
        'seLinuxOptions (container "c" set forbidden securityContext.seLinuxOptions: type "spc_t")',
    ),
    (
        "SELinux user and role",
        spec(securityContext={"seLinuxOptions": {"user": "system_u", "role": "system_r"}}),
        {},
        "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: user may not be set; role may not be set)",
    ),
    (
        "Windows hostProcess",
        spec(securityContext={"windowsOptions": {"hostProcess": True}}),
        {},
        "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
    ),
]


@pytest.mark.parametrize(
    ("case", "pod_spec", "meta", "message"), BASELINE_REFUSED, ids=[c[0] for c in BASELINE_REFUSED]
)
def test_baseline_refuses(case: str, pod_spec: Obj, meta: Obj, message: str) -> None:
    assert messages("baseline", pod_spec, meta) == [message]
    # What baseline refuses, restricted refuses too.
    assert check("restricted", meta, pod_spec) != []
    # And privileged allows everything.
    assert check("privileged", meta, pod_spec) == []


# ---- restricted ----------------------------------------------------------------------------

RESTRICTED_ALLOWED: list[tuple[str, Obj]] = [
    ("fully restricted container", spec(restricted_container())),
    (
        "pod-level runAsNonRoot and seccomp",
        spec(
            container(sc={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}),
            securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        ),
    ),
    (
        "NET_BIND_SERVICE added",
        spec(restricted_container(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})),
    ),
    (
        "Localhost seccomp",
        spec(
            restricted_container(seccompProfile={"type": "Localhost", "localhostProfile": "x.json"})
        ),
    ),
    (
        "allowed volume types",
        spec(
            restricted_container(),
            volumes=[
                {"name": "a", "emptyDir": {}},
                {"name": "b", "configMap": {"name": "x"}},
                {"name": "c", "secret": {"secretName": "s"}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "p"}},
                {"name": "e", "projected": {"sources": []}},
                {"name": "f", "downwardAPI": {"items": []}},
            ],
        ),
    ),
    ("non-root user id", spec(restricted_container(runAsUser=1000))),
    (
        "restricted init container too",
        spec(restricted_container("app"), initContainers=[restricted_container("init")]),
    ),
    (
        "windows pods skip linux-only checks",
        spec(container(sc={"runAsNonRoot": True}), os={"name": "windows"}),
    ),
]


@pytest.mark.parametrize(
    ("case", "pod_spec"), RESTRICTED_ALLOWED, ids=[c[0] for c in RESTRICTED_ALLOWED]
)
def test_restricted_allows(case: str, pod_spec: Obj) -> None:
    assert check("restricted", {}, pod_spec) == []
    assert check("baseline", {}, pod_spec) == []


RESTRICTED_REFUSED: list[tuple[str, Obj, list[str]]] = [
    (
        "nothing set",
        spec(container("nginx")),
        [
            'allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false)',
            'unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"])',
            'runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true)',
            'seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
        ],
    ),
    (
        "privilege escalation allowed",
        spec(restricted_container(allowPrivilegeEscalation=True)),
        [
            'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)'
        ],
    ),
    (
        "capability added",
        spec(restricted_container(capabilities={"drop": ["ALL"], "add": ["SYS_TIME"]})),
        [
            'unrestricted capabilities (container "c" must not include "SYS_TIME" in securityContext.capabilities.add)',
        ],
    ),
    (
        "baseline-allowed capability added",
        spec(restricted_container(capabilities={"drop": ["ALL"], "add": ["CHOWN"]})),
        [
            'unrestricted capabilities (container "c" must not include "CHOWN" in securityContext.capabilities.add)'
        ],
    ),
    (
        "capabilities not dropped",
        spec(restricted_container(capabilities={"drop": ["NET_RAW"]})),
        [
            'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])'
        ],
    ),
    (
        "runAsNonRoot false on the container",
        spec(restricted_container(runAsNonRoot=False)),
        ['runAsNonRoot != true (container "c" must not set securityContext.runAsNonRoot=false)'],
    ),
    (
        "runAsNonRoot false on the pod",
        spec(
            container(sc={k: v for k, v in RESTRICTED_CONTAINER_SC.items() if k != "runAsNonRoot"}),
            securityContext={"runAsNonRoot": False},
        ),
        [
            'runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false; pod or container "c" must set securityContext.runAsNonRoot=true)'
        ],
    ),
    (
        "runAsUser 0 on pod and container",
        spec(restricted_container(runAsUser=0), securityContext={"runAsUser": 0}),
        ['runAsUser=0 (pod and container "c" must not set runAsUser=0)'],
    ),
    (
        "seccomp Unconfined",
        spec(restricted_container(seccompProfile={"type": "Unconfined"})),
        [
            'seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")'
        ],
    ),
    (
        "hostPath is a restricted volume type (not also a hostPath violation)",
        spec(restricted_container(), volumes=[{"name": "host", "hostPath": {"path": "/"}}]),
        ['restricted volume types (volume "host" uses restricted volume type "hostPath")'],
    ),
    (
        "other restricted volume types",
        spec(
            restricted_container(),
            volumes=[
                {"name": "n", "nfs": {"server": "x", "path": "/"}},
                {"name": "g", "gitRepo": {"repository": "r"}},
            ],
        ),
        ['restricted volume types (volumes "n", "g" use restricted volume types "gitRepo", "nfs")'],
    ),
    (
        "privileged and restricted problems in id order",
        spec(container("web", sc={"privileged": True})),
        [
            'allowPrivilegeEscalation != false (container "web" must set securityContext.allowPrivilegeEscalation=false)',
            'unrestricted capabilities (container "web" must set securityContext.capabilities.drop=["ALL"])',
            'privileged (container "web" must not set securityContext.privileged=true)',
            'runAsNonRoot != true (pod or container "web" must set securityContext.runAsNonRoot=true)',
            'seccompProfile (pod or container "web" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
        ],
    ),
    (
        "one good and one bad container",
        spec(restricted_container("good"), container("bad", sc={"runAsNonRoot": True})),
        [
            'allowPrivilegeEscalation != false (container "bad" must set securityContext.allowPrivilegeEscalation=false)',
            'unrestricted capabilities (container "bad" must set securityContext.capabilities.drop=["ALL"])',
            'seccompProfile (pod or container "bad" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
        ],
    ),
]


@pytest.mark.parametrize(
    ("case", "pod_spec", "expected"), RESTRICTED_REFUSED, ids=[c[0] for c in RESTRICTED_REFUSED]
)
def test_restricted_refuses(case: str, pod_spec: Obj, expected: list[str]) -> None:
    assert messages("restricted", pod_spec) == expected


def test_the_capabilities_check_is_replaced_at_restricted() -> None:
    # Baseline's "non-default capabilities" becomes "unrestricted capabilities".
    pod_spec = spec(restricted_container(capabilities={"drop": ["ALL"], "add": ["SYS_TIME"]}))
    assert reasons("baseline", pod_spec) == ["non-default capabilities"]
    assert reasons("restricted", pod_spec) == ["unrestricted capabilities"]


def test_summary_is_worded_like_kubernetes() -> None:
    found = check("restricted", {}, spec(container("c", sc={"privileged": True})))
    text = summary(Policy("restricted"), found)
    assert text.startswith(
        'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "c" must set securityContext.allowPrivilegeEscalation=false), '
    )
    assert 'privileged (container "c" must not set securityContext.privileged=true)' in text


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, {}),
        ({"pod-security.kubernetes.io/enforce": "restricted"}, {"enforce": "restricted:latest"}),
        (
            {
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/enforce-version": "v1.29",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
            {
                "enforce": "baseline:v1.29",
                "warn": "restricted:latest",
                "audit": "restricted:latest",
            },
        ),
        ({"pod-security.kubernetes.io/enforce": "bogus"}, {}),
    ],
)
def test_policies_from_labels(labels: dict[str, str], expected: dict[str, str]) -> None:
    assert {mode: str(p) for mode, p in policies(labels).items()} == expected


def test_label_problems() -> None:
    assert label_problems({"pod-security.kubernetes.io/enforce": "restricted"}) == []
    problems = label_problems(
        {
            "pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/warn-version": "1.29",
        }
    )
    assert problems == [
        (
            "metadata.labels[pod-security.kubernetes.io/enforce]",
            'Invalid value: "strict": must be one of privileged, baseline, restricted',
        ),
        (
            "metadata.labels[pod-security.kubernetes.io/warn-version]",
            'Invalid value: "1.29": must be "latest" or of the form "v1.x"',
        ),
    ]


def test_every_check_has_a_known_level_and_ids_are_sorted() -> None:
    ids = [c[0] for c in podsecurity.CHECKS]
    assert ids == sorted(ids)
    assert {c[1] for c in podsecurity.CHECKS} == {"baseline", "restricted"}
