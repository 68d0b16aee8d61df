"""Kubernetes RBAC: which rules a user holds where, and whether they allow a request.

Semantics callers may rely on (they are Kubernetes'):
- deny by default: a request is allowed only if some rule bound to the user matches it;
- a ClusterRoleBinding grants its ClusterRole everywhere (every namespace, cluster-scoped
  resources and non-resource URLs); a RoleBinding grants its Role or ClusterRole only inside
  the binding's namespace;
- ``pods`` does not cover ``pods/log``; ``*`` covers every resource and subresource;
  ``*/scale`` covers the scale subresource of every resource; resourceNames restrict by name;
- a ServiceAccount subject is the user ``system:serviceaccount:<namespace>:<name>`` (also in
  the groups ``system:serviceaccounts`` and ``system:serviceaccounts:<namespace>``);
- nobody can grant what they do not hold (``covers``), unless they have the ``escalate`` verb
  on roles or the ``bind`` verb on the role being bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kumo.auth.authorizer import Attributes, Decision
from kumo.auth.user import UserInfo
from kumo.model.base import LabelSelector
from kumo.model.rbac import ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject
from kumo.model.selectors import SelectorError, from_label_selector

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


class RuleSource(Protocol):
    """Read access to the RBAC objects; implementations answer from a cache."""

    def cluster_role(self, name: str) -> ClusterRole | None: ...

    def cluster_roles(self) -> Sequence[ClusterRole]: ...

    def role(self, namespace: str, name: str) -> Role | None: ...

    def cluster_role_bindings(self) -> Sequence[ClusterRoleBinding]: ...

    def role_bindings(self, namespace: str) -> Sequence[RoleBinding]: ...


def service_account_user(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def parse_service_account(username: str) -> tuple[str, str] | None:
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, _, name = username[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
    if not namespace or not name or ":" in name:
        return None
    return namespace, name


def subject_matches(subject: Subject, user: UserInfo, binding_namespace: str) -> bool:
    if subject.kind == "User":
        return subject.name == user.name
    if subject.kind == "Group":
        return subject.name in user.groups
    if subject.kind == "ServiceAccount":
        namespace = subject.namespace or binding_namespace
        return bool(namespace) and user.name == service_account_user(namespace, subject.name)
    return False


# ---- matching one rule ---------------------------------------------------------------------


def _verb_matches(rule: PolicyRule, verb: str) -> bool:
    return "*" in rule.verbs or verb in rule.verbs


def _group_matches(rule: PolicyRule, group: str) -> bool:
    groups = rule.api_groups or []
    return "*" in groups or group in groups


def _resource_matches(rule: PolicyRule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for candidate in rule.resources or []:
        if candidate in ("*", combined):
            return True
        if subresource and candidate == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: PolicyRule, name: str) -> bool:
    names = rule.resource_names or []
    return not names or name in names


def _url_matches(rule: PolicyRule, path: str) -> bool:
    for url in rule.non_resource_urls or []:
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: PolicyRule, attributes: Attributes) -> bool:
    if not _verb_matches(rule, attributes.verb):
        return False
    if attributes.is_resource_request:
        return (
            _group_matches(rule, attributes.api_group)
            and _resource_matches(rule, attributes.resource, attributes.subresource)
            and _name_matches(rule, attributes.name)
        )
    return _url_matches(rule, attributes.path)


# ---- which rules a user holds --------------------------------------------------------------


def cluster_role_rules(source: RuleSource, role: ClusterRole) -> list[PolicyRule]:
    """A ClusterRole's rules, including those it aggregates by label selector."""
    rules = list(role.rules or [])
    aggregation = role.aggregation_rule
    if aggregation is None:
        return rules
    selectors = []
    for selector in aggregation.cluster_role_selectors or []:
        try:
            selectors.append(
                from_label_selector(
                    selector
                    if isinstance(selector, LabelSelector)
                    else LabelSelector.model_validate(selector)
                )
            )
        except SelectorError:
            continue
    for other in source.cluster_roles():
        if other.metadata.name == role.metadata.name:
            continue
        if any(s.matches(other.metadata.labels) for s in selectors):
            rules.extend(other.rules or [])
    return rules


@dataclass(frozen=True, slots=True)
class Grant:
    """Rules, and where they apply: namespace "" means everywhere (cluster-wide)."""

    namespace: str
    rules: tuple[PolicyRule, ...]
    via: str  # the binding that grants them, for explanations


def grants(source: RuleSource, user: UserInfo, namespace: str) -> Iterable[Grant]:
    """Every grant that applies to ``user`` for a request in ``namespace`` ("" = cluster)."""
    for binding in source.cluster_role_bindings():
        if binding.role_ref.kind != "ClusterRole":
            continue
        if not any(subject_matches(s, user, "") for s in binding.subjects or []):
            continue
        role = source.cluster_role(binding.role_ref.name)
        if role is not None:
            yield Grant(
                "",
                tuple(cluster_role_rules(source, role)),
                f"ClusterRoleBinding/{binding.metadata.name}",
            )
    if not namespace:
        return
    for role_binding in source.role_bindings(namespace):
        if not any(subject_matches(s, user, namespace) for s in role_binding.subjects or []):
            continue
        rules: list[PolicyRule] = []
        ref = role_binding.role_ref
        if ref.kind == "ClusterRole":
            cluster_role = source.cluster_role(ref.name)
            if cluster_role is not None:
                rules = cluster_role_rules(source, cluster_role)
        elif ref.kind == "Role":
            namespaced_role = source.role(namespace, ref.name)
            if namespaced_role is not None:
                rules = list(namespaced_role.rules or [])
        if rules:
            yield Grant(
                namespace, tuple(rules), f"RoleBinding/{namespace}/{role_binding.metadata.name}"
            )


def allows(source: RuleSource, attributes: Attributes) -> Decision:
    for grant in grants(source, attributes.user, attributes.namespace):
        for rule in grant.rules:
            if rule_allows(rule, attributes):
                return Decision(True, f"allowed by {grant.via}")
    return Decision(False)  # no reason, as Kubernetes' RBAC: the 403 says who cannot do what


class RBACAuthorizer:
    """The Authorizer: Kubernetes RBAC over a RuleSource."""

    def __init__(self, source: RuleSource) -> None:
        self.source = source

    async def authorize(self, attributes: Attributes) -> Decision:
        return allows(self.source, attributes)


# ---- escalation prevention ---------------------------------------------------------------


def _expand(rule: PolicyRule) -> Iterable[tuple[str, str, str, str]]:
    """A rule as (verb, group, resource, name) atoms; '' name means every name."""
    names = rule.resource_names or [""]
    for verb in rule.verbs:
        for group in rule.api_groups or [""]:
            for resource in rule.resources or []:
                for name in names:
                    yield verb, group, resource, name


def _atom_covered(
    owner: Sequence[PolicyRule], verb: str, group: str, resource: str, name: str
) -> bool:
    """Literal comparison, as Kubernetes does it: a '*' the requester asks for is only
    covered by a '*' the owner holds."""
    for rule in owner:
        if "*" not in rule.verbs and verb not in rule.verbs:
            continue
        groups = rule.api_groups or []
        if "*" not in groups and group not in groups:
            continue
        resources = rule.resources or []
        _, _, sub = resource.partition("/")
        if not ("*" in resources or resource in resources or (sub and f"*/{sub}" in resources)):
            continue
        if rule.resource_names and (not name or name not in rule.resource_names):
            continue
        return True
    return False


def _url_covered(owner: Sequence[PolicyRule], verb: str, url: str) -> bool:
    for rule in owner:
        if "*" not in rule.verbs and verb not in rule.verbs:
            continue
        for have in rule.non_resource_urls or []:
            if have == "*" or have == url or (have.endswith("*") and url.startswith(have[:-1])):
                return True
    return False


def covers(owner: Sequence[PolicyRule], requested: Sequence[PolicyRule]) -> list[str]:
    """The parts of ``requested`` that ``owner`` does not hold (empty: fully covered)."""
    missing: list[str] = []
    for rule in requested:
        if rule.non_resource_urls:
            for verb in rule.verbs:
                for url in rule.non_resource_urls:
                    if not _url_covered(owner, verb, url):
                        missing.append(f"{{NonResourceURLs:[{url}], Verbs:[{verb}]}}")
            continue
        for verb, group, resource, name in _expand(rule):
            if not _atom_covered(owner, verb, group, resource, name):
                names = f", ResourceNames:[{name}]" if name else ""
                missing.append(
                    f"{{APIGroups:[{group!r}], Resources:[{resource!r}]{names}, Verbs:[{verb!r}]}}"
                )
    return missing


def held_rules(source: RuleSource, user: UserInfo, namespace: str) -> list[PolicyRule]:
    """Every rule the user may use in ``namespace`` (cluster-wide ones included)."""
    out: list[PolicyRule] = []
    for grant in grants(source, user, namespace):
        out.extend(grant.rules)
    return out
