"""Who may do what: the API server's authentication chain, RBAC authorization, the default
policy, escalation prevention and the audit log, set up together.

- Authentication: user tokens (``StoreTokens``), service-account JWTs
  (``ServiceAccountTokens``; the signing key is made at first start under ``<data>/pki``)
  and, when configured, OIDC ID tokens.
- Authorization: members of ``system:masters`` may do anything; a node's reads of Secrets,
  ConfigMaps, PersistentVolumeClaims and ServiceAccounts (and its TokenRequests) are the
  Node authorizer's to decide (``kumo.auth.node_authorizer``: only what pods bound to it
  use); everything else is what Kubernetes RBAC over the stored Roles, ClusterRoles and
  bindings allows (deny by default). As ``--authorization-mode=Node,RBAC``.
- The bootstrap ClusterRoles and ClusterRoleBindings (``kumo.auth.bootstrap_policy``) are
  created at start, and those annotated ``rbac.authorization.kubernetes.io/autoupdate:
  "true"`` get back any rule or subject they lost (nothing is removed), as Kubernetes
  reconciles them.
- Escalation prevention (an admission step): creating or changing a Role/ClusterRole needs
  every rule in it (or ``escalate`` on it); a RoleBinding/ClusterRoleBinding needs the
  referenced role's rules where the binding applies (or ``bind`` on that role). Only an
  update that changes nothing but ownerReferences and finalizers (the garbage collector's)
  goes unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette

from kumo.auth import bootstrap_policy
from kumo.auth.authorizer import Attributes, Authorizer, Decision
from kumo.auth.node_authorizer import NodeAuthorizer
from kumo.auth.oidc import OIDCAuthenticator, OIDCOptions
from kumo.auth.rbac import RBACAuthorizer, RuleSource, cluster_role_rules, covers, held_rules
from kumo.auth.service_accounts import DEFAULT_ISSUER, TokenSigner, load_or_create_key
from kumo.auth.user import UserInfo
from kumo.model.base import Resource, to_wire
from kumo.model.rbac import ClusterRole, ClusterRoleBinding, PolicyRule
from kumo.model.registry import ResourceInfo, for_model
from kumo.platform.api import admission
from kumo.platform.api import audit as audit_log
from kumo.platform.api.authn import Authenticators, ServiceAccountTokens, StoreTokens
from kumo.platform.api.errors import ApiError
from kumo.platform.api.nodepods import PodsByNode
from kumo.platform.api.rbac_source import StoreRuleSource
from kumo.platform.api.resources import storage_key
from kumo.platform.store import AlreadyExists, Conflict, NotFound
from kumo.platform.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

RBAC_GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"


@dataclass(slots=True)
class AccessOptions:
    # The audit log (JSON lines); None: <data-dir>/audit.log. ``audit=False`` turns it off.
    audit_log_path: Path | None = None
    audit: bool = True
    audit_max_bytes: int = audit_log.DEFAULT_MAX_BYTES
    # ``iss`` of service-account tokens, and the audiences the API server accepts
    # (default: the issuer alone, as Kubernetes defaults --api-audiences).
    service_account_issuer: str = DEFAULT_ISSUER
    api_audiences: list[str] = field(default_factory=list)
    oidc: OIDCOptions | None = None

    @property
    def audiences(self) -> list[str]:
        return list(self.api_audiences) or [self.service_account_issuer]


class ClusterAuthorizer:
    """``system:masters`` may do anything; then the Node authorizer (when given) decides
    what it governs; everything else is held to RBAC."""

    def __init__(self, source: RuleSource, nodes: NodeAuthorizer | None = None) -> None:
        self.source = source
        self.nodes = nodes
        self.rbac = RBACAuthorizer(source)

    async def authorize(self, attributes: Attributes) -> Decision:
        if attributes.user.is_master:
            return Decision(True, "system:masters")
        if self.nodes is not None:
            decision = self.nodes.decide(attributes)
            if decision is not None:
                return decision
        return await self.rbac.authorize(attributes)


# ---- escalation prevention -------------------------------------------------------------------


def _groups_text(user: UserInfo) -> str:
    return "[" + " ".join(f'"{g}"' for g in user.groups) + "]"


def _escalation_error(
    info: ResourceInfo, name: str, user: UserInfo, missing: list[str], namespace: str
) -> ApiError:
    where = f' in namespace "{namespace}"' if namespace else ""
    return ApiError(
        403,
        "Forbidden",
        f'{info.group_resource} "{name}" is forbidden: user "{user.name}" '
        f"(groups={_groups_text(user)}) is attempting to grant RBAC permissions not "
        f"currently held{where}:\n" + "\n".join(missing),
        details={"name": name, "group": info.group, "kind": info.plural},
    )


# What the garbage collector (and a finalizer's owner) changes: an update of a role or binding
# that changes nothing else needs no escalation check (Kubernetes' IsOnlyMutatingGCFields).
# Any other change (subjects, labels that aggregate a role, rules) is checked in full.
_GC_FIELDS = frozenset({"ownerReferences", "finalizers", "resourceVersion", "managedFields"})


def only_gc_fields_changed(obj: dict[str, Any], old: dict[str, Any]) -> bool:
    def rest(o: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (o.get("metadata") or {}).items() if k not in _GC_FIELDS}
        return {**o, "metadata": meta}

    return rest(obj) == rest(old)


class EscalationCheck:
    """The admission step that keeps anyone from granting what they do not hold."""

    def __init__(self, source: RuleSource, authorizer: Authorizer) -> None:
        self.source = source
        self.authorizer = authorizer

    async def _allowed(self, attributes: Attributes) -> bool:
        return (await self.authorizer.authorize(attributes)).allowed

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
    ) -> list[str] | None:
        if info.group != RBAC_GROUP or operation not in ("CREATE", "UPDATE"):
            return None
        if user.is_master:
            return None
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "") if info.namespaced else ""
        name = str(meta.get("name") or "")
        if info.kind in ("Role", "ClusterRole"):
            await self._check_role(info, obj, old, user, namespace=namespace, name=name)
        elif info.kind in ("RoleBinding", "ClusterRoleBinding"):
            await self._check_binding(info, obj, old, user, namespace=namespace, name=name)
        return None

    async def _check_role(
        self,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
        *,
        namespace: str,
        name: str,
    ) -> None:
        escalate = Attributes(
            user=user,
            verb="escalate",
            api_group=RBAC_GROUP,
            resource=info.plural,
            namespace=namespace,
            name=name,
        )
        if info.kind == "ClusterRole" and obj.get("aggregationRule"):
            if await self._allowed(escalate):
                return
            raise ApiError(
                403,
                "Forbidden",
                f'{info.group_resource} "{name}" is forbidden: must have cluster-admin '
                "privileges to use the aggregationRule",
                details={"name": name, "group": info.group, "kind": info.plural},
            )
        if old is not None and only_gc_fields_changed(obj, old):
            return
        if await self._allowed(escalate):
            return
        rules = [PolicyRule.model_validate(r) for r in obj.get("rules") or []]
        missing = covers(held_rules(self.source, user, namespace), rules)
        if missing:
            raise _escalation_error(info, name, user, missing, namespace)

    async def _check_binding(
        self,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
        *,
        namespace: str,
        name: str,
    ) -> None:
        ref = obj.get("roleRef") or {}
        if old is not None and only_gc_fields_changed(obj, old):
            return
        kind, role_name = str(ref.get("kind", "")), str(ref.get("name", ""))
        bind = Attributes(
            user=user,
            verb="bind",
            api_group=RBAC_GROUP,
            resource="clusterroles" if kind == "ClusterRole" else "roles",
            namespace=namespace,
            name=role_name,
        )
        if await self._allowed(bind):
            return
        rules: list[PolicyRule] | None = None
        if kind == "ClusterRole":
            cluster_role = self.source.cluster_role(role_name)
            if cluster_role is not None:
                rules = cluster_role_rules(self.source, cluster_role)
        elif kind == "Role":
            role = self.source.role(namespace, role_name)
            if role is not None:
                rules = list(role.rules or [])
        if rules is None:
            plural = "clusterroles" if kind == "ClusterRole" else "roles"
            raise ApiError(
                404,
                "NotFound",
                f'{plural}.{RBAC_GROUP} "{role_name}" not found',
                details={"name": role_name, "group": RBAC_GROUP, "kind": plural},
            )
        missing = covers(held_rules(self.source, user, namespace), rules)
        if missing:
            raise _escalation_error(info, name, user, missing, namespace)


# ---- the default policy ---------------------------------------------------------------------


def _missing_rules(have: list[PolicyRule], want: list[PolicyRule]) -> list[PolicyRule]:
    return [rule for rule in want if covers(have, [rule])]


async def _create(store: SQLiteStore, info: ResourceInfo, model: Resource) -> None:
    admission.prepare_create(info, model, "")
    obj = admission.admit_new(info, model)
    with contextlib.suppress(AlreadyExists):
        await store.create(storage_key(info, "", model.metadata.name or ""), obj)


async def _reconcile_role(store: SQLiteStore, role: ClusterRole) -> None:
    info = for_model(ClusterRole)
    key = storage_key(info, "", role.name)
    for _ in range(5):
        entry = store.get_entry(key)
        if entry is None:
            await _create(store, info, role.model_copy(deep=True))
            return
        existing = entry.obj
        if (existing.get("metadata", {}).get("annotations") or {}).get(AUTOUPDATE) != "true":
            return
        try:
            current = ClusterRole.model_validate(existing)
        except ValidationError:
            current = ClusterRole()
        missing = _missing_rules(list(current.rules or []), list(role.rules or []))
        if not missing:
            return
        updated = dict(existing)
        updated["rules"] = [*(existing.get("rules") or []), *(to_wire(r) for r in missing)]
        try:
            await store.update(key, updated, entry.revision)
            return
        except (Conflict, NotFound):
            continue


async def _reconcile_binding(store: SQLiteStore, binding: ClusterRoleBinding) -> None:
    info = for_model(ClusterRoleBinding)
    key = storage_key(info, "", binding.name)
    for _ in range(5):
        entry = store.get_entry(key)
        if entry is None:
            await _create(store, info, binding.model_copy(deep=True))
            return
        existing = entry.obj
        if (existing.get("metadata", {}).get("annotations") or {}).get(AUTOUPDATE) != "true":
            return
        wanted_ref = to_wire(binding.role_ref)
        if existing.get("roleRef") != wanted_ref:  # roleRef is immutable: replace the binding
            with contextlib.suppress(NotFound, Conflict):
                await store.delete(key, entry.revision)
            continue
        subjects = list(existing.get("subjects") or [])
        added = [to_wire(s) for s in binding.subjects or [] if to_wire(s) not in subjects]
        if not added:
            return
        updated = dict(existing)
        updated["subjects"] = subjects + added
        try:
            await store.update(key, updated, entry.revision)
            return
        except (Conflict, NotFound):
            continue


async def reconcile_bootstrap_policy(store: SQLiteStore) -> None:
    for role in bootstrap_policy.cluster_roles():
        await _reconcile_role(store, role)
    for binding in bootstrap_policy.cluster_role_bindings():
        await _reconcile_binding(store, binding)


# ---- putting it together ---------------------------------------------------------------------


class Access:
    """Built by ``ApiServer.start``: ``await Access.start(...)``, then ``install(app)``."""

    def __init__(
        self,
        store: SQLiteStore,
        options: AccessOptions,
        *,
        signer: TokenSigner,
        authorizer: Authorizer | None = None,
        audit_path: Path | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.signer = signer
        self.source = StoreRuleSource(store)
        self.pods_by_node = PodsByNode(store)
        self.authorizer: Authorizer = authorizer or ClusterAuthorizer(
            self.source, NodeAuthorizer(self.pods_by_node.pods_on)
        )
        self.user_tokens = StoreTokens(store)
        self.service_account_tokens = ServiceAccountTokens(store, signer, options.audiences)
        self.authenticators = Authenticators(
            self.user_tokens, self.service_account_tokens, api_audiences=options.audiences
        )
        self.oidc: OIDCAuthenticator | None = None
        if options.oidc is not None:
            self.oidc = OIDCAuthenticator(options.oidc)
            self.authenticators.add(self.oidc)
        self.audit: audit_log.AuditLog | None = None
        if options.audit and audit_path is not None:
            self.audit = audit_log.AuditLog(audit_path, options.audit_max_bytes)

    @classmethod
    async def start(
        cls,
        store: SQLiteStore,
        options: AccessOptions,
        *,
        pki_dir: Path,
        data_dir: Path,
        authorizer: Authorizer | None = None,
    ) -> Access:
        key = await asyncio.to_thread(load_or_create_key, pki_dir)
        signer = TokenSigner(key, options.service_account_issuer)
        audit_path = options.audit_log_path or data_dir / "audit.log"
        access = cls(store, options, signer=signer, authorizer=authorizer, audit_path=audit_path)
        await reconcile_bootstrap_policy(store)
        if access.audit is not None:
            await asyncio.to_thread(access.audit.open)
        if access.oidc is not None:
            await access.oidc.keys()  # fail loudly in the log now, not at the first login
        return access

    def install(self, app: Starlette) -> None:
        """Serve the review and token endpoints, add escalation prevention to admission and
        wrap the app with the audit log."""
        from kumo.platform.api import reviews

        reviews.install(app, self)
        app.state.kumo.resources.plugins.append(EscalationCheck(self.source, self.authorizer))
        if self.audit is not None:
            audit_log.install(app, self.audit)

    def close(self) -> None:
        self.pods_by_node.close()
        if self.audit is not None:
            self.audit.close()


__all__ = [
    "Access",
    "AccessOptions",
    "ClusterAuthorizer",
    "EscalationCheck",
    "reconcile_bootstrap_policy",
]
