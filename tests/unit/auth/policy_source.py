"""An in-memory RBAC ``RuleSource`` for unit tests: kumo's bootstrap ClusterRoles plus
whatever roles and bindings a test gives it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kumo.auth import bootstrap_policy
from kumo.model.rbac import ClusterRole, ClusterRoleBinding, Role, RoleBinding


@dataclass
class Source:
    roles: list[ClusterRole] = field(default_factory=bootstrap_policy.cluster_roles)
    namespaced: list[Role] = field(default_factory=list)
    crbs: list[ClusterRoleBinding] = field(default_factory=list)
    rbs: list[RoleBinding] = field(default_factory=list)

    def cluster_role(self, name: str) -> ClusterRole | None:
        return next((r for r in self.roles if r.metadata.name == name), None)

    def cluster_roles(self) -> Sequence[ClusterRole]:
        return self.roles

    def role(self, namespace: str, name: str) -> Role | None:
        return next(
            (r for r in self.namespaced if (r.namespace, r.name) == (namespace, name)), None
        )

    def cluster_role_bindings(self) -> Sequence[ClusterRoleBinding]:
        return self.crbs

    def role_bindings(self, namespace: str) -> Sequence[RoleBinding]:
        return [b for b in self.rbs if b.metadata.namespace == namespace]


def bootstrap_source() -> Source:
    """The bootstrap ClusterRoles and their default ClusterRoleBindings, as a fresh server."""
    return Source(crbs=bootstrap_policy.cluster_role_bindings())
