"""rbac.authorization.k8s.io/v1 kinds."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field

from kumo.model.base import KumoModel, LabelSelector, Resource, show_value, wire_value
from kumo.model.core import Problems

VERBS = (
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "escalate",
    "bind",
    "impersonate",
    "use",
    "approve",
    "sign",
    "proxy",
    "*",
)


class PolicyRule(KumoModel):
    verbs: list[str]
    api_groups: list[str] | None = None
    resources: list[str] | None = None
    resource_names: list[str] | None = None
    non_resource_urls: list[str] | None = Field(default=None, alias="nonResourceURLs")


class AggregationRule(KumoModel):
    cluster_role_selectors: list[LabelSelector] | None = None


class Subject(KumoModel):
    kind: str
    name: str
    api_group: str | None = None
    namespace: str | None = None


class RoleRef(KumoModel):
    api_group: str
    kind: str
    name: str


def _validate_rules(rules: list[PolicyRule] | None, namespaced: bool) -> Problems:
    out: Problems = []
    for i, rule in enumerate(rules or []):
        here = f"rules[{i}]"
        if not rule.verbs:
            out.append((f"{here}.verbs", "Required value: verbs must contain at least one value"))
        if rule.non_resource_urls:
            if namespaced:
                out.append(
                    (
                        f"{here}.nonResourceURLs",
                        "Invalid value: namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.resources or rule.api_groups:
                out.append(
                    (
                        f"{here}.nonResourceURLs",
                        "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
        elif not rule.resources:
            out.append(
                (
                    f"{here}.resources",
                    "Required value: resource rules must supply at least one resource",
                )
            )
        elif rule.api_groups is None:
            out.append(
                (
                    f"{here}.apiGroups",
                    "Required value: resource rules must supply at least one api group",
                )
            )
    return out


def _validate_binding(
    subjects: list[Subject] | None, role_ref: RoleRef, namespaced: bool
) -> Problems:
    out: Problems = []
    if role_ref.api_group != "rbac.authorization.k8s.io":
        out.append(
            (
                "roleRef.apiGroup",
                f'Unsupported value: "{role_ref.api_group}": supported values: "rbac.authorization.k8s.io"',
            )
        )
    allowed = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if role_ref.kind not in allowed:
        out.append(
            (
                "roleRef.kind",
                f'Unsupported value: "{role_ref.kind}": supported values: '
                + ", ".join(f'"{a}"' for a in allowed),
            )
        )
    if not role_ref.name:
        out.append(("roleRef.name", "Required value"))
    for i, subject in enumerate(subjects or []):
        here = f"subjects[{i}]"
        if subject.kind not in ("User", "Group", "ServiceAccount"):
            out.append(
                (
                    f"{here}.kind",
                    f'Unsupported value: "{subject.kind}": supported values: "Group", "ServiceAccount", "User"',
                )
            )
        if not subject.name:
            out.append((f"{here}.name", "Required value"))
        if subject.kind == "ServiceAccount":
            if subject.api_group:
                out.append(
                    (
                        f"{here}.apiGroup",
                        f'Unsupported value: "{subject.api_group}": supported values: ""',
                    )
                )
            if not namespaced and not subject.namespace:
                out.append((f"{here}.namespace", "Required value"))
        elif subject.kind in ("User", "Group") and subject.api_group not in (
            None,
            "rbac.authorization.k8s.io",
        ):
            out.append(
                (
                    f"{here}.apiGroup",
                    f'Unsupported value: "{subject.api_group}": supported values: "rbac.authorization.k8s.io"',
                )
            )
    return out


def _role_ref_unchanged(new: RoleRef, old: RoleRef) -> Problems:
    if wire_value(new) == wire_value(old):
        return []
    return [("roleRef", f"Invalid value: {show_value(new)}: cannot change roleRef")]


class Role(Resource):
    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["Role"] = "Role"
    rules: list[PolicyRule] | None = None

    plural = "roles"
    name_rule = "path"  # as Kubernetes: "system:..." names
    singular = "role"
    has_spec = False

    def validate_semantics(self) -> Problems:
        return _validate_rules(self.rules, namespaced=True)


class ClusterRole(Resource):
    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["ClusterRole"] = "ClusterRole"
    rules: list[PolicyRule] | None = None
    aggregation_rule: AggregationRule | None = None

    plural = "clusterroles"
    name_rule = "path"  # as Kubernetes: "system:..." names
    singular = "clusterrole"
    namespaced = False
    has_spec = False

    def validate_semantics(self) -> Problems:
        return _validate_rules(self.rules, namespaced=False)


class RoleBinding(Resource):
    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["RoleBinding"] = "RoleBinding"
    subjects: list[Subject] | None = None
    role_ref: RoleRef

    plural = "rolebindings"
    name_rule = "path"  # as Kubernetes: "system:..." names
    singular = "rolebinding"
    has_spec = False

    def apply_defaults(self) -> None:
        for subject in self.subjects or []:
            if subject.kind in ("User", "Group") and subject.api_group is None:
                subject.api_group = "rbac.authorization.k8s.io"
            if subject.kind == "ServiceAccount" and subject.namespace is None:
                subject.namespace = self.namespace

    def validate_semantics(self) -> Problems:
        return _validate_binding(self.subjects, self.role_ref, namespaced=True)

    def validate_update(self, old: Self) -> Problems:
        return _role_ref_unchanged(self.role_ref, old.role_ref)


class ClusterRoleBinding(Resource):
    api_version: Literal["rbac.authorization.k8s.io/v1"] = "rbac.authorization.k8s.io/v1"
    kind: Literal["ClusterRoleBinding"] = "ClusterRoleBinding"
    subjects: list[Subject] | None = None
    role_ref: RoleRef

    plural = "clusterrolebindings"
    name_rule = "path"  # as Kubernetes: "system:..." names
    singular = "clusterrolebinding"
    namespaced = False
    has_spec = False

    def apply_defaults(self) -> None:
        for subject in self.subjects or []:
            if subject.kind in ("User", "Group") and subject.api_group is None:
                subject.api_group = "rbac.authorization.k8s.io"

    def validate_semantics(self) -> Problems:
        return _validate_binding(self.subjects, self.role_ref, namespaced=False)

    def validate_update(self, old: Self) -> Problems:
        return _role_ref_unchanged(self.role_ref, old.role_ref)
