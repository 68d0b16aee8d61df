"""Every kind the API serves, and how to find one by kind, plural, short name or path."""

from __future__ import annotations

from dataclasses import dataclass

from kumo.model.apps import Deployment, ReplicaSet
from kumo.model.autoscaling import HorizontalPodAutoscaler
from kumo.model.base import Resource
from kumo.model.batch import CronJob, Job
from kumo.model.coordination import Lease
from kumo.model.core import (
    ConfigMap,
    Endpoints,
    Event,
    LimitRange,
    Namespace,
    Node,
    Pod,
    ResourceQuota,
    Secret,
    Service,
    ServiceAccount,
)
from kumo.model.functions import Function
from kumo.model.policy import PodDisruptionBudget
from kumo.model.rbac import ClusterRole, ClusterRoleBinding, Role, RoleBinding


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    subresources: tuple[str, ...]
    categories: tuple[str, ...]
    model: type[Resource]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` / ``pods`` — how kubectl and Status messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_group(self) -> str:
        """``deployment.apps`` — how ``kubectl apply`` output names it."""
        return f"{self.kind.lower()}.{self.group}" if self.group else self.kind.lower()

    def base_path(self, namespace: str | None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"

    def path(
        self, namespace: str | None, name: str | None = None, subresource: str | None = None
    ) -> str:
        path = self.base_path(namespace)
        if name:
            path += f"/{name}"
            if subresource:
                path += f"/{subresource}"
        return path


def _info(model: type[Resource]) -> ResourceInfo:
    api_version = model.model_fields["api_version"].default
    group, _, version = api_version.rpartition("/")
    return ResourceInfo(
        group=group,
        version=version,
        kind=model.model_fields["kind"].default,
        plural=model.plural,
        singular=model.singular,
        short_names=model.short_names,
        namespaced=model.namespaced,
        subresources=model.subresources,
        categories=model.categories,
        model=model,
    )


KINDS: tuple[type[Resource], ...] = (
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    Event,
    ResourceQuota,
    LimitRange,
    ReplicaSet,
    Deployment,
    Job,
    CronJob,
    Lease,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    Function,
)

RESOURCES: tuple[ResourceInfo, ...] = tuple(_info(m) for m in KINDS)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}


def by_path(group: str, version: str, plural: str) -> ResourceInfo | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceInfo | None:
    return _BY_KIND.get((api_version, kind))


def for_model(model: type[Resource]) -> ResourceInfo:
    found = by_kind(model.model_fields["api_version"].default, model.model_fields["kind"].default)
    assert found is not None, model
    return found


def groups() -> dict[str, list[str]]:
    """group -> versions served (the core group is "")."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out


_GROUP_VERSIONS = frozenset((r.group, r.version) for r in RESOURCES)


def serves(group: str, version: str) -> bool:
    """Whether any kind is served under this group and version (the core group is "")."""
    return (group, version) in _GROUP_VERSIONS


def resolve(name: str) -> list[ResourceInfo]:
    """What a user typed (``deploy``, ``deployments.apps``, ``Pod``, ``all``) -> kinds."""
    text = name.strip()
    lowered = text.lower()
    category = [r for r in RESOURCES if lowered in r.categories]
    if category:
        return category
    resource, _, group = lowered.partition(".")
    hits = []
    for r in RESOURCES:
        if group and r.group != group and not r.group.startswith(group + "."):
            continue
        if resource in (r.plural, r.singular, r.kind.lower(), *r.short_names):
            hits.append(r)
    return hits
