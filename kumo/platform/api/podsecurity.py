"""Pod Security admission: Kubernetes' Pod Security Standards, chosen per namespace.

A namespace picks a level per mode with labels, as in Kubernetes::

    pod-security.kubernetes.io/enforce: restricted      # privileged | baseline | restricted
    pod-security.kubernetes.io/enforce-version: latest  # optional
    pod-security.kubernetes.io/warn: restricted
    pod-security.kubernetes.io/audit: baseline

Without a label the level is ``privileged`` (everything allowed), Kubernetes' default.

- ``enforce``: a pod that violates the level is refused with a 403 worded like Kubernetes'
  (``pods "x" is forbidden: violates PodSecurity "restricted:latest": privileged (container
  "c" must not set securityContext.privileged=true), ...``);
- ``warn``: the create succeeds with a ``Warning`` header (``would violate PodSecurity ...``);
- ``audit``: kumo logs the violation and warns like ``warn``;
- workload objects (Deployment, ReplicaSet, Job, ...) are never refused; their pod template
  is checked against every level the namespace sets, and violations come back as warnings,
  so a Deployment whose pods would be refused says so when it is applied;
- changing a namespace's enforce level warns about existing pods that break the new level;
  an unknown level or version label is a 422.

``check(level, metadata, spec)`` is the pure evaluation (wire dicts in, violations out).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kumo.auth.user import UserInfo
from kumo.model.registry import ResourceInfo
from kumo.platform.api.errors import ApiError, forbidden, invalid

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LEVELS = ("privileged", "baseline", "restricted")
MODES = ("enforce", "warn", "audit")
LABEL_PREFIX = "pod-security.kubernetes.io/"
_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]*)$")

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# Pod templates of these kinds are checked (path to the template inside the object).
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "PodTemplate": ("template",),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True, slots=True)
class Violation:
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


@dataclass(frozen=True, slots=True)
class Policy:
    level: str
    version: str = "latest"

    def __str__(self) -> str:
        return f"{self.level}:{self.version}"


# ---- helpers ---------------------------------------------------------------------------------


def _plural(one: str, many: str, count: int) -> str:
    return one if count == 1 else many


def _quote(values: Iterable[Any]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _containers(spec: Obj) -> list[Obj]:
    """Init containers, containers, ephemeral containers: the order Kubernetes visits them."""
    out: list[Obj] = []
    for group in ("initContainers", "containers", "ephemeralContainers"):
        out.extend(c for c in spec.get(group) or [] if isinstance(c, dict))
    return out


def _sc(obj: Obj) -> Obj:
    found = obj.get("securityContext")
    return found if isinstance(found, dict) else {}


def _name(container: Obj) -> str:
    return str(container.get("name", ""))


def _who(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_quote(names)}"


def _setters(pod: bool, names: list[str]) -> list[str]:
    out = ["pod"] if pod else []
    if names:
        out.append(_who(names))
    return out


def _windows(spec: Obj) -> bool:
    os_spec = spec.get("os")
    return isinstance(os_spec, dict) and os_spec.get("name") == "windows"


# ---- baseline checks ---------------------------------------------------------------------------


def _host_namespaces(meta: Obj, spec: Obj) -> Violation | None:
    used = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)]
    return Violation("host namespaces", ", ".join(used)) if used else None


def _privileged(meta: Obj, spec: Obj) -> Violation | None:
    bad = [_name(c) for c in _containers(spec) if _sc(c).get("privileged") is True]
    if not bad:
        return None
    return Violation("privileged", f"{_who(bad)} must not set securityContext.privileged=true")


def _capabilities_baseline(meta: Obj, spec: Obj) -> Violation | None:
    bad: list[str] = []
    added: set[str] = set()
    for container in _containers(spec):
        caps = _sc(container).get("capabilities") or {}
        extra = [str(c) for c in caps.get("add") or [] if str(c) not in BASELINE_CAPABILITIES]
        if extra:
            bad.append(_name(container))
            added.update(extra)
    if not bad:
        return None
    return Violation(
        "non-default capabilities",
        f"{_who(bad)} must not include {_quote(sorted(added))} in securityContext.capabilities.add",
    )


def _host_path_volumes(meta: Obj, spec: Obj) -> Violation | None:
    bad = [
        str(v.get("name", "")) for v in spec.get("volumes") or [] if v.get("hostPath") is not None
    ]
    if not bad:
        return None
    return Violation("hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_quote(bad)}")


def _host_ports(meta: Obj, spec: Obj) -> Violation | None:
    bad: list[str] = []
    ports: set[str] = set()
    for container in _containers(spec):
        used = [str(p.get("hostPort")) for p in container.get("ports") or [] if p.get("hostPort")]
        if used:
            bad.append(_name(container))
            ports.update(used)
    if not bad:
        return None
    return Violation(
        "hostPort",
        f"{_who(bad)} {_plural('uses', 'use', len(bad))} "
        f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}",
    )


def _host_process(meta: Obj, spec: Obj) -> Violation | None:
    pod = (_sc(spec).get("windowsOptions") or {}).get("hostProcess") is True
    bad = [
        _name(c)
        for c in _containers(spec)
        if (_sc(c).get("windowsOptions") or {}).get("hostProcess") is True
    ]
    setters = _setters(pod, bad)
    if not setters:
        return None
    return Violation(
        "hostProcess",
        f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
    )


def _proc_mount(meta: Obj, spec: Obj) -> Violation | None:
    if spec.get("hostUsers") is False:
        return None  # a user namespace makes an unmasked /proc safe
    bad: list[str] = []
    values: set[str] = set()
    for container in _containers(spec):
        mount = _sc(container).get("procMount")
        if mount is not None and mount != "Default":
            bad.append(_name(container))
            values.add(str(mount))
    if not bad:
        return None
    return Violation(
        "procMount",
        f"{_who(bad)} must not set securityContext.procMount to {_quote(sorted(values))}",
    )


def _apparmor(meta: Obj, spec: Obj) -> Violation | None:
    def bad_type(sc: Obj) -> str | None:
        profile = sc.get("appArmorProfile")
        if not isinstance(profile, dict):
            return None
        kind = str(profile.get("type", ""))
        return None if kind in ("RuntimeDefault", "Localhost") else kind

    values: set[str] = set()
    pod_value = bad_type(_sc(spec))
    if pod_value is not None:
        values.add(pod_value)
    bad: list[str] = []
    for container in _containers(spec):
        value = bad_type(_sc(container))
        if value is not None:
            bad.append(_name(container))
            values.add(value)
    annotations = [
        f'{key}="{value}"'
        for key, value in sorted((meta.get("annotations") or {}).items())
        if key.startswith(APPARMOR_ANNOTATION)
        and value not in ("", "runtime/default")
        and not str(value).startswith("localhost/")
    ]
    details = []
    setters = _setters(pod_value is not None, bad)
    if setters:
        details.append(
            f"{' and '.join(setters)} must not set securityContext.appArmorProfile.type to "
            f"{_quote(sorted(values))}"
        )
    if annotations:
        details.append(
            f"{_plural('annotation', 'annotations', len(annotations))} {', '.join(annotations)}"
        )
    if not details:
        return None
    count = len(values) + len(annotations)
    return Violation(
        _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", count),
        ", ".join(details),
    )


def _selinux(meta: Obj, spec: Obj) -> Violation | None:
    types: set[str] = set()
    flags = {"user": False, "role": False}

    def bad(sc: Obj) -> bool:
        options = sc.get("seLinuxOptions")
        if not isinstance(options, dict):
            return False
        wrong = False
        kind = str(options.get("type", ""))
        if kind not in SELINUX_TYPES:
            types.add(kind)
            wrong = True
        for field in ("user", "role"):
            if options.get(field):
                flags[field] = True
                wrong = True
        return wrong

    pod = bad(_sc(spec))
    containers = [_name(c) for c in _containers(spec) if bad(_sc(c))]
    setters = _setters(pod, containers)
    if not setters:
        return None
    data = []
    if types:
        data.append(f"{_plural('type', 'types', len(types))} {_quote(sorted(types))}")
    data.extend(f"{field} may not be set" for field in ("user", "role") if flags[field])
    return Violation(
        "seLinuxOptions",
        f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
    )


def _seccomp_type(sc: Obj) -> str | None:
    profile = sc.get("seccompProfile")
    if not isinstance(profile, dict):
        return None
    return str(profile.get("type", ""))


def _seccomp_baseline(meta: Obj, spec: Obj) -> Violation | None:
    details = []
    pod_type = _seccomp_type(_sc(spec))
    if pod_type == "Unconfined":
        details.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    bad = [_name(c) for c in _containers(spec) if _seccomp_type(_sc(c)) == "Unconfined"]
    if bad:
        details.append(
            f'{_who(bad)} must not set securityContext.seccompProfile.type to "Unconfined"'
        )
    return Violation("seccompProfile", "; ".join(details)) if details else None


def _sysctls(meta: Obj, spec: Obj) -> Violation | None:
    bad = [
        str(s.get("name", ""))
        for s in _sc(spec).get("sysctls") or []
        if str(s.get("name", "")) not in SAFE_SYSCTLS
    ]
    return Violation("forbidden sysctls", ", ".join(bad)) if bad else None


# ---- restricted checks -------------------------------------------------------------------------


def _restricted_volumes(meta: Obj, spec: Obj) -> Violation | None:
    bad: list[str] = []
    kinds: set[str] = set()
    for volume in spec.get("volumes") or []:
        sources = [k for k in volume if k != "name" and volume[k] is not None]
        wrong = [k for k in sources if k not in RESTRICTED_VOLUME_TYPES]
        if wrong:
            bad.append(str(volume.get("name", "")))
            kinds.update(wrong)
    if not bad:
        return None
    return Violation(
        "restricted volume types",
        f"{_plural('volume', 'volumes', len(bad))} {_quote(bad)} {_plural('uses', 'use', len(bad))} "
        f"{_plural('restricted volume type', 'restricted volume types', len(kinds))} "
        f"{_quote(sorted(kinds))}",
    )


def _allow_privilege_escalation(meta: Obj, spec: Obj) -> Violation | None:
    if _windows(spec):
        return None
    bad = [
        _name(c) for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    return Violation(
        "allowPrivilegeEscalation != false",
        f"{_who(bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def _capabilities_restricted(meta: Obj, spec: Obj) -> Violation | None:
    if _windows(spec):
        return None
    missing_drop: list[str] = []
    adding: list[str] = []
    forbidden_caps: set[str] = set()
    for container in _containers(spec):
        caps = _sc(container).get("capabilities")
        if not isinstance(caps, dict):
            missing_drop.append(_name(container))
            continue
        if "ALL" not in [str(c) for c in caps.get("drop") or []]:
            missing_drop.append(_name(container))
        extra = [str(c) for c in caps.get("add") or [] if str(c) != "NET_BIND_SERVICE"]
        if extra:
            adding.append(_name(container))
            forbidden_caps.update(extra)
    details = []
    if missing_drop:
        details.append(f'{_who(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(
            f"{_who(adding)} must not include {_quote(sorted(forbidden_caps))} in "
            "securityContext.capabilities.add"
        )
    return Violation("unrestricted capabilities", "; ".join(details)) if details else None


def _run_as_non_root(meta: Obj, spec: Obj) -> Violation | None:
    if spec.get("hostUsers") is False:
        return None
    pod_value = _sc(spec).get("runAsNonRoot")
    pod_bad = pod_value is False
    pod_ok = pod_value is True
    explicit: list[str] = []
    implicit: list[str] = []
    for container in _containers(spec):
        value = _sc(container).get("runAsNonRoot")
        if value is False:
            explicit.append(_name(container))
        elif value is None and not pod_ok:
            implicit.append(_name(container))
    details = []
    if pod_bad:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    if explicit:
        details.append(f"{_who(explicit)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        details.append(f"pod or {_who(implicit)} must set securityContext.runAsNonRoot=true")
    return Violation("runAsNonRoot != true", "; ".join(details)) if details else None


def _is_root(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def _run_as_user(meta: Obj, spec: Obj) -> Violation | None:
    if spec.get("hostUsers") is False:
        return None
    pod = _is_root(_sc(spec).get("runAsUser"))
    bad = [_name(c) for c in _containers(spec) if _is_root(_sc(c).get("runAsUser"))]
    setters = _setters(pod, bad)
    if not setters:
        return None
    return Violation("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0")


def _seccomp_restricted(meta: Obj, spec: Obj) -> Violation | None:
    if _windows(spec):
        return None
    valid = ("RuntimeDefault", "Localhost")
    details = []
    pod_type = _seccomp_type(_sc(spec))
    pod_set = False
    if pod_type is not None:
        if pod_type not in valid:
            details.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
        else:
            pod_set = True
    explicit: list[str] = []
    values: set[str] = set()
    implicit: list[str] = []
    for container in _containers(spec):
        kind = _seccomp_type(_sc(container))
        if kind is not None:
            if kind not in valid:
                explicit.append(_name(container))
                values.add(kind)
        elif not pod_set:
            implicit.append(_name(container))
    if explicit:
        details.append(
            f"{_who(explicit)} must not set securityContext.seccompProfile.type to "
            f"{_quote(sorted(values))}"
        )
    if implicit:
        details.append(
            f'pod or {_who(implicit)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
        )
    return Violation("seccompProfile", "; ".join(details)) if details else None


Check = Callable[[Obj, Obj], Violation | None]

# (id, level, checks it replaces at that level, function); evaluated in id order.
CHECKS: tuple[tuple[str, str, tuple[str, ...], Check], ...] = (
    ("allowPrivilegeEscalation", "restricted", (), _allow_privilege_escalation),
    ("appArmorProfile", "baseline", (), _apparmor),
    ("capabilities_baseline", "baseline", (), _capabilities_baseline),
    ("capabilities_restricted", "restricted", ("capabilities_baseline",), _capabilities_restricted),
    ("hostNamespaces", "baseline", (), _host_namespaces),
    ("hostPathVolumes", "baseline", (), _host_path_volumes),
    ("hostPorts", "baseline", (), _host_ports),
    ("hostProcess", "baseline", (), _host_process),
    ("privileged", "baseline", (), _privileged),
    ("procMount", "baseline", (), _proc_mount),
    ("restrictedVolumes", "restricted", ("hostPathVolumes",), _restricted_volumes),
    ("runAsNonRoot", "restricted", (), _run_as_non_root),
    ("runAsUser", "restricted", (), _run_as_user),
    ("seLinuxOptions", "baseline", (), _selinux),
    ("seccompProfile_baseline", "baseline", (), _seccomp_baseline),
    ("seccompProfile_restricted", "restricted", ("seccompProfile_baseline",), _seccomp_restricted),
    ("sysctls", "baseline", (), _sysctls),
)


def check(level: str, metadata: Obj | None, spec: Obj | None) -> list[Violation]:
    """Every violation of ``level`` by a pod with this metadata and spec (Kubernetes' order)."""
    if level not in ("baseline", "restricted"):
        return []
    wanted = ("baseline",) if level == "baseline" else ("baseline", "restricted")
    active = [c for c in CHECKS if c[1] in wanted]
    replaced = {old for _, _, overrides, _ in active for old in overrides}
    meta, pod_spec = metadata or {}, spec or {}
    out = []
    for check_id, _, _, func in active:
        if check_id in replaced:
            continue
        found = func(meta, pod_spec)
        if found is not None:
            out.append(found)
    return out


# Warnings travel in HTTP headers that the API server cuts at 512 characters.
MAX_WARNING = 500


def summary(policy: Policy, violations: list[Violation]) -> str:
    return f'violates PodSecurity "{policy}": ' + ", ".join(str(v) for v in violations)


def warning(policy: Policy, violations: list[Violation]) -> str:
    """``would violate PodSecurity ...``; with reasons only when the details do not fit."""
    text = "would " + summary(policy, violations).replace("violates", "violate", 1)
    if len(text) <= MAX_WARNING:
        return text
    reasons = ", ".join(dict.fromkeys(v.reason for v in violations))
    return f'would violate PodSecurity "{policy}": {reasons}'


# ---- namespace labels -------------------------------------------------------------------------


def label_problems(labels: dict[str, str] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for mode in MODES:
        key = LABEL_PREFIX + mode
        level = (labels or {}).get(key)
        if level is not None and level not in LEVELS:
            out.append(
                (
                    f"metadata.labels[{key}]",
                    f'Invalid value: "{level}": must be one of privileged, baseline, restricted',
                )
            )
        version = (labels or {}).get(f"{key}-version")
        if version is not None and version != "latest" and not _VERSION.match(version):
            out.append(
                (
                    f"metadata.labels[{key}-version]",
                    f'Invalid value: "{version}": must be "latest" or of the form "v1.x"',
                )
            )
    return out


def policies(labels: dict[str, str] | None) -> dict[str, Policy]:
    """mode -> policy, for the modes a namespace's labels set (unknown values ignored)."""
    out: dict[str, Policy] = {}
    for mode in MODES:
        level = (labels or {}).get(LABEL_PREFIX + mode)
        if level in LEVELS:
            version = (labels or {}).get(f"{LABEL_PREFIX}{mode}-version") or "latest"
            out[mode] = Policy(str(level), version)
    return out


def _template(info: ResourceInfo, obj: Obj) -> Obj | None:
    path = TEMPLATE_PATHS.get(info.kind)
    if path is None:
        return None
    current: Any = obj
    for step in path:
        if not isinstance(current, dict):
            return None
        current = current.get(step)
    return current if isinstance(current, dict) else None


# ---- the plugin ------------------------------------------------------------------------------


class PodSecurity:
    def __init__(self, store: Any) -> None:
        self.store = store

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        entry = self.store.get_entry(f"registry/core/namespaces/{namespace}")
        if entry is None:
            return {}
        labels: dict[str, str] = (entry.obj.get("metadata") or {}).get("labels") or {}
        return labels

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: Obj,
        old: Obj | None,
        user: UserInfo,
    ) -> list[str] | None:
        if info.group == "" and info.kind == "Namespace":
            return await self._namespace(operation, obj, old)
        if operation not in ("CREATE", "UPDATE"):
            return None
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        if not namespace:
            return None
        if info.group == "" and info.kind == "Pod":
            if operation != "CREATE":
                return None  # what an update may change cannot break a level
            return self._pod(info, obj, namespace)
        template = _template(info, obj)
        if template is None:
            return None
        if operation == "UPDATE" and old is not None and _template(info, old) == template:
            return None
        chosen = policies(self._namespace_labels(namespace))
        warnings = []
        for mode in MODES:
            policy = chosen.get(mode)
            if policy is None:
                continue
            found = check(policy.level, template.get("metadata"), template.get("spec"))
            if found:
                warnings.append(warning(policy, found))
                if mode == "audit":
                    self._audit(info, obj, namespace, policy, found)
        return list(dict.fromkeys(warnings)) or None

    def _pod(self, info: ResourceInfo, obj: Obj, namespace: str) -> list[str] | None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        chosen = policies(self._namespace_labels(namespace))
        enforce = chosen.get("enforce")
        if enforce is not None:
            found = check(enforce.level, meta, obj.get("spec"))
            if found:
                raise forbidden(
                    f'pods "{name}" is forbidden: {summary(enforce, found)}', info, name or None
                )
        warnings = []
        for mode in ("warn", "audit"):
            policy = chosen.get(mode)
            if policy is None or policy == enforce:
                continue
            found = check(policy.level, meta, obj.get("spec"))
            if found:
                warnings.append(warning(policy, found))
                if mode == "audit":
                    self._audit(info, obj, namespace, policy, found)
        return list(dict.fromkeys(warnings)) or None

    @staticmethod
    def _audit(
        info: ResourceInfo, obj: Obj, namespace: str, policy: Policy, found: list[Violation]
    ) -> None:
        log.info(
            "pod security audit: %s %s/%s %s",
            info.kind,
            namespace,
            (obj.get("metadata") or {}).get("name", ""),
            summary(policy, found),
        )

    async def _namespace(self, operation: str, obj: Obj, old: Obj | None) -> list[str] | None:
        if operation not in ("CREATE", "UPDATE"):
            return None
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        labels = meta.get("labels") or {}
        old_labels = ((old or {}).get("metadata") or {}).get("labels") or {}
        # Only what this write changes is checked: a namespace stored before is left alone.
        problems = label_problems({k: v for k, v in labels.items() if old_labels.get(k) != v})
        if problems:
            raise _invalid_namespace(name, problems)
        if operation != "UPDATE" or old is None:
            return None
        new_policy = policies(labels).get("enforce")
        old_policy = policies(((old.get("metadata") or {}).get("labels")) or {}).get("enforce")
        if new_policy is None or new_policy == old_policy or new_policy.level == "privileged":
            return None
        return await self._existing_pods(name, new_policy)

    async def _existing_pods(self, namespace: str, policy: Policy) -> list[str] | None:
        result = await self.store.list(f"registry/core/pods/{namespace}/")
        groups: dict[str, list[str]] = {}
        for entry in result.items:
            pod = entry.obj
            found = check(policy.level, pod.get("metadata"), pod.get("spec"))
            if found:
                reasons = ", ".join(dict.fromkeys(v.reason for v in found))
                groups.setdefault(reasons, []).append(
                    str((pod.get("metadata") or {}).get("name", ""))
                )
        if not groups:
            return None
        warnings = [
            f'existing pods in namespace "{namespace}" violate the new PodSecurity enforce level "{policy}"'
        ]
        for reasons, names in groups.items():
            who = names[0] if len(names) == 1 else f"{names[0]} (and {len(names) - 1} other pods)"
            warnings.append(f"{who}: {reasons}")
        return warnings


def _invalid_namespace(name: str, problems: list[tuple[str, str]]) -> ApiError:
    return invalid("Namespace", "", name, problems)
