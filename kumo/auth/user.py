"""Who is calling: the result of authentication."""

from __future__ import annotations

from dataclasses import dataclass, field

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups


# ---- the identities of kumo's own components (Kubernetes' names where Kubernetes has one) ----

NODES = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
GATEWAY_USER = "system:kumo:gateway"

# component name -> user; "node" (alias "agent") is per node: see ``component_identity``
COMPONENT_USERS = {
    "scheduler": SCHEDULER_USER,
    "controllers": CONTROLLER_MANAGER_USER,
    "gateway": GATEWAY_USER,
}
COMPONENTS = ("scheduler", "controllers", "gateway", "node")


def node_user(node_name: str) -> str:
    return f"{NODE_USER_PREFIX}{node_name}"


def node_identity(user: UserInfo) -> tuple[bool, str]:
    """(is a node, its node name), as Kubernetes' NodeIdentifier: a node is a user in group
    ``system:nodes``; its name follows ``system:node:``. A member of the group whose name
    lacks the prefix is a node of unknown name ("")."""
    if NODES not in user.groups:
        return False, ""
    if not user.name.startswith(NODE_USER_PREFIX):
        return True, ""
    return True, user.name[len(NODE_USER_PREFIX) :]


def component_identity(component: str, node_name: str | None = None) -> tuple[str, list[str]]:
    """(user, groups) a kumo component acts as: ``scheduler`` → system:kube-scheduler,
    ``controllers`` → system:kube-controller-manager, ``gateway`` → system:kumo:gateway,
    ``node`` (or ``agent``) → system:node:<node_name> in group system:nodes. Never
    system:masters: the bootstrap policy binds each to a ClusterRole of what it needs."""
    if component in ("node", "agent"):
        if not node_name:
            raise ValueError("a node identity needs the node's name")
        return node_user(node_name), [NODES]
    user = COMPONENT_USERS.get(component)
    if user is None:
        raise ValueError(
            f"unknown component {component!r}; known: {', '.join(COMPONENTS)} (or agent)"
        )
    return user, []
