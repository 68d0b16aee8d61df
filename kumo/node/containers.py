"""From a Kubernetes container spec to the runtime's ``ContainerConfig``.

Environment (``env`` with ``valueFrom`` and ``$(VAR)`` expansion, ``envFrom``),
command / args / workingDir, resources → cgroup limits, securityContext → process
identity and privileges (pod-level settings, container-level overrides). Anything
that makes a container impossible to create raises ``ConfigError``; the agent shows
its message as the container's CreateContainerConfigError.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from kumo.model.base import to_wire
from kumo.model.core import ConfigMap, Container, Pod, Secret
from kumo.model.validation import QuantityError, cpu_millis, memory_bytes, parse_quantity
from kumo.node.api import NodeApi
from kumo.node.runtime import (
    ContainerConfig,
    InvalidConfig,
    Mount,
    Resources,
    SecurityConfig,
    normalize_capability,
)

__all__ = [
    "LABEL_SPEC_HASH",
    "ConfigError",
    "EnvContext",
    "build_container_config",
    "container_resources",
    "expand",
    "field_value",
    "pod_full_name",
    "resolve_env",
    "resource_value",
    "security_config",
    "spec_hash",
]

#: Label on each container: a hash of the container spec it was created from, so a
#: changed spec (a new image) restarts the container.
LABEL_SPEC_HASH = "kumo.dev/spec-hash"

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError)."""


def pod_full_name(pod: Pod) -> str:
    """``name_namespace(uid)``, how the kubelet names a pod in messages."""
    return f"{pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})"


def spec_hash(container: Container) -> str:
    text = json.dumps(to_wire(container), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known variables are replaced, unknown
    references stay as written, ``$$`` escapes a dollar."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, text)


@dataclass(slots=True)
class EnvContext:
    """What ``valueFrom`` can refer to besides API objects."""

    pod_ip: str = ""
    host_ip: str = ""
    node_cpu_millis: int = 0
    node_memory_bytes: int = 0
    # ConfigMaps / Secrets fetched during one sync (None: does not exist).
    config_maps: dict[str, ConfigMap | None] = field(default_factory=dict)
    secrets: dict[str, Secret | None] = field(default_factory=dict)
    # The Service variables (kumo.node.service_discovery): the container's own
    # variables win, and may refer to them with $(VAR).
    service_env: dict[str, str] = field(default_factory=dict)


async def _config_map(api: NodeApi, namespace: str, name: str, ctx: EnvContext) -> ConfigMap | None:
    if name not in ctx.config_maps:
        ctx.config_maps[name] = await api.get_config_map(namespace, name)
    return ctx.config_maps[name]


async def _secret(api: NodeApi, namespace: str, name: str, ctx: EnvContext) -> Secret | None:
    if name not in ctx.secrets:
        ctx.secrets[name] = await api.get_secret(namespace, name)
    return ctx.secrets[name]


async def _config_map_data(
    api: NodeApi, namespace: str, name: str | None, optional: bool | None, ctx: EnvContext
) -> dict[str, str] | None:
    """The data of a ConfigMap an env source names; None when it is missing but optional."""
    config_map = await _config_map(api, namespace, name or "", ctx)
    if config_map is None:
        if optional:
            return None
        raise ConfigError(f'configmap "{name}" not found')
    return dict(config_map.data or {})


async def _secret_data(
    api: NodeApi, namespace: str, name: str | None, optional: bool | None, ctx: EnvContext
) -> dict[str, str] | None:
    """The decoded data of a Secret an env source names; None when it is missing but
    optional."""
    secret = await _secret(api, namespace, name or "", ctx)
    if secret is None:
        if optional:
            return None
        raise ConfigError(f'secret "{name}" not found')
    return {k: v.decode(errors="replace") for k, v in secret.decoded().items()}


def _key_value(
    data: dict[str, str] | None, key: str, optional: bool | None, what: str
) -> str | None:
    """``data[key]`` for a key reference into ``what``; None when there is nothing to set
    (``data`` is None, or the key is missing but optional)."""
    if data is None:
        return None
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {what}")
    return data[key]


def _field_value(pod: Pod, path: str, ctx: EnvContext) -> str:
    meta = pod.metadata
    simple = {
        "metadata.name": meta.name or "",
        "metadata.namespace": meta.namespace or "",
        "metadata.uid": meta.uid or "",
        "spec.nodeName": pod.spec.node_name or "",
        "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        source = meta.labels if match.group(1) == "labels" else meta.annotations
        return (source or {}).get(match.group(2), "")
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.labels or {}).items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.annotations or {}).items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _resource_value(
    pod: Pod,
    *,
    container: Container,
    name: str | None,
    resource: str,
    divisor: str | None,
    ctx: EnvContext,
) -> str:
    target = container
    if name:
        target = next(
            (
                c
                for c in [*pod.spec.containers, *(pod.spec.init_containers or [])]
                if c.name == name
            ),
            container,
        )
    kind, _, what = resource.partition(".")
    requirements = target.resources
    amounts = (
        (requirements.limits if kind == "limits" else requirements.requests)
        if requirements
        else None
    ) or {}
    try:
        divide_by = parse_quantity(divisor or "1")
        if divide_by <= 0:
            raise ConfigError(f"invalid divisor {divisor!r}")
        if what == "cpu":
            millis = cpu_millis(amounts["cpu"]) if "cpu" in amounts else ctx.node_cpu_millis
            if kind == "requests" and "cpu" not in amounts:
                millis = 0
            value = Decimal(millis) / 1000 / divide_by
        elif what == "memory":
            count = (
                memory_bytes(amounts["memory"]) if "memory" in amounts else ctx.node_memory_bytes
            )
            if kind == "requests" and "memory" not in amounts:
                count = 0
            value = Decimal(count) / divide_by
        elif what == "ephemeral-storage":
            value = (
                Decimal(memory_bytes(amounts[what])) / divide_by if what in amounts else Decimal(0)
            )
        else:
            raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    except QuantityError as err:
        raise ConfigError(f"invalid quantity in resourceFieldRef {resource!r}: {err}") from err
    return str(math.ceil(value))


# The same resolution serves downwardAPI volumes (kumo.node.volumes).
field_value = _field_value
resource_value = _resource_value


async def resolve_env(
    pod: Pod, container: Container, api: NodeApi, ctx: EnvContext
) -> dict[str, str]:
    """The container's environment: ``envFrom`` first, then ``env`` (later wins),
    with ``$(VAR)`` references to earlier variables (and Service variables) expanded;
    the Service variables of ``ctx`` under all of them."""
    namespace = pod.metadata.namespace or "default"
    env: dict[str, str] = {}
    for source in container.env_from or []:
        prefix = source.prefix or ""
        if source.config_map_ref is not None:
            ref = source.config_map_ref
            items = await _config_map_data(api, namespace, ref.name, ref.optional, ctx)
        elif source.secret_ref is not None:
            sref = source.secret_ref
            items = await _secret_data(api, namespace, sref.name, sref.optional, ctx)
        else:
            continue
        if items is None:
            continue
        for key, value in items.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for var in container.env or []:
        if var.value_from is None:
            env[var.name] = expand(var.value or "", ChainMap(env, ctx.service_env))
            continue
        source_of = var.value_from
        if source_of.config_map_key_ref is not None:
            key_ref = source_of.config_map_key_ref
            data = await _config_map_data(api, namespace, key_ref.name, key_ref.optional, ctx)
            what = f"ConfigMap {namespace}/{key_ref.name}"
            found = _key_value(data, key_ref.key, key_ref.optional, what)
            if found is not None:
                env[var.name] = found
        elif source_of.secret_key_ref is not None:
            key_ref = source_of.secret_key_ref
            data = await _secret_data(api, namespace, key_ref.name, key_ref.optional, ctx)
            what = f"Secret {namespace}/{key_ref.name}"
            found = _key_value(data, key_ref.key, key_ref.optional, what)
            if found is not None:
                env[var.name] = found
        elif source_of.field_ref is not None:
            env[var.name] = _field_value(pod, source_of.field_ref.field_path, ctx)
        elif source_of.resource_field_ref is not None:
            field_ref = source_of.resource_field_ref
            env[var.name] = _resource_value(
                pod,
                container=container,
                name=field_ref.container_name,
                resource=field_ref.resource,
                divisor=field_ref.divisor,
                ctx=ctx,
            )
    if ctx.service_env:
        return {**ctx.service_env, **env}
    return env


def container_resources(container: Container) -> Resources:
    """requests / limits → cgroup settings (Kubernetes' mapping)."""
    requirements = container.resources
    requests = (requirements.requests if requirements else None) or {}
    limits = (requirements.limits if requirements else None) or {}
    try:
        return Resources.from_kubernetes(
            cpu_request_millis=cpu_millis(requests["cpu"]) if "cpu" in requests else None,
            cpu_limit_millis=cpu_millis(limits["cpu"]) if "cpu" in limits else None,
            memory_request_bytes=memory_bytes(requests["memory"]) if "memory" in requests else None,
            memory_limit_bytes=memory_bytes(limits["memory"]) if "memory" in limits else None,
        )
    except QuantityError as err:
        raise ConfigError(f"invalid resource quantity: {err}") from err


def _image_uid(image_user: str) -> int | None:
    """The numeric uid of an image's USER ("" = root); None if it is a name."""
    user = image_user.partition(":")[0].strip()
    if user in ("", "root"):
        return 0
    return int(user) if user.isdigit() else None


def security_config(pod: Pod, container: Container, image_user: str | None) -> SecurityConfig:
    """The runtime security settings; ``image_user`` is the image's USER (needed for
    runAsNonRoot). The defaults are the safe ones: no-new-privileges and the reduced
    capability set."""
    pod_context = pod.spec.security_context
    context = container.security_context
    run_as_user = context.run_as_user if context and context.run_as_user is not None else None
    if run_as_user is None and pod_context is not None:
        run_as_user = pod_context.run_as_user
    run_as_group = context.run_as_group if context and context.run_as_group is not None else None
    if run_as_group is None and pod_context is not None:
        run_as_group = pod_context.run_as_group
    non_root = context.run_as_non_root if context and context.run_as_non_root is not None else None
    if non_root is None and pod_context is not None:
        non_root = pod_context.run_as_non_root
    where = f'(pod: "{pod_full_name(pod)}", container: {container.name})'
    if non_root:
        if run_as_user is not None:
            if run_as_user == 0:
                raise ConfigError(f"container's runAsUser breaks non-root policy {where}")
        else:
            uid = _image_uid(image_user or "")
            if uid is None:
                raise ConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({image_user}), "
                    f"cannot verify user is non-root {where}"
                )
            if uid == 0:
                raise ConfigError(f"container has runAsNonRoot and image will run as root {where}")
    groups: list[int] = []
    if pod_context is not None:
        groups.extend(pod_context.supplemental_groups or [])
        if pod_context.fs_group is not None:
            groups.append(pod_context.fs_group)
    privileged = bool(context and context.privileged)
    capabilities = context.capabilities if context else None
    try:
        cap_add = (
            tuple(normalize_capability(c) for c in (capabilities.add or [])) if capabilities else ()
        )
        cap_drop = (
            tuple(normalize_capability(c) for c in (capabilities.drop or []))
            if capabilities
            else ()
        )
    except InvalidConfig as err:
        raise ConfigError(err.reason) from err
    escalation = context.allow_privilege_escalation if context else None
    if escalation is False and (privileged or "CAP_SYS_ADMIN" in cap_add):
        raise ConfigError(
            f"cannot set allowPrivilegeEscalation to false and privileged or CAP_SYS_ADMIN {where}"
        )
    return SecurityConfig(
        run_as_user=run_as_user,
        run_as_group=run_as_group,
        supplemental_groups=tuple(dict.fromkeys(groups)),
        read_only_rootfs=bool(context and context.read_only_root_filesystem),
        cap_add=cap_add,
        cap_drop=cap_drop,
        privileged=privileged,
        no_new_privileges=escalation is not True,
    )


def build_container_config(
    pod: Pod,
    container: Container,
    *,
    attempt: int,
    env: Mapping[str, str],
    mounts: tuple[Mount, ...],
    image: str,
    image_user: str | None,
) -> ContainerConfig:
    """The runtime config of one attempt of ``container``."""
    command = tuple(expand(part, env) for part in container.command) if container.command else None
    args = (
        tuple(expand(part, env) for part in container.args) if container.args is not None else None
    )
    if args is not None and not args and command is None:
        args = None
    return ContainerConfig(
        name=container.name,
        image=image,
        command=command,
        args=args,
        env=dict(env),
        working_dir=container.working_dir or None,
        labels={LABEL_SPEC_HASH: spec_hash(container)},
        attempt=attempt,
        mounts=mounts,
        resources=container_resources(container),
        security=security_config(pod, container, image_user),
        tty=bool(container.tty),
        stdin=bool(container.stdin),
    )
