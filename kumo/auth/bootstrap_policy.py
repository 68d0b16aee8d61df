"""The default ClusterRoles and ClusterRoleBindings, as Kubernetes ships them
(cluster-admin, admin, edit, view and the system: roles), limited to what kumo serves plus
the subresources kumo adds.

kumo's own components act as least-privilege users, as Kubernetes' do (never
``system:masters``): ``system:kube-scheduler``, ``system:kube-controller-manager``,
``system:kumo:gateway`` and, per node, ``system:node:<name>`` in group ``system:nodes``
(``kumo.auth.user.component_identity``). Each role below grants what that component's code
calls, no more; the NodeRestriction admission plugin then limits a node to its own Node,
Lease and pods.
"""

from __future__ import annotations

from kumo.auth.user import CONTROLLER_MANAGER_USER, GATEWAY_USER, NODES, SCHEDULER_USER
from kumo.model.rbac import ClusterRole, ClusterRoleBinding, PolicyRule

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
RBAC_GROUP = "rbac.authorization.k8s.io"
COORDINATION = "coordination.k8s.io"
# The Lease each component's leader election takes (kube-system/<name>).
SCHEDULER_LEASE = "kumo-scheduler"
CONTROLLER_MANAGER_LEASE = "kube-controller-manager"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def _rule(
    groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None
) -> PolicyRule:
    return PolicyRule(api_groups=groups, resources=resources, verbs=verbs, resource_names=names)


def _view_rules() -> list[PolicyRule]:
    return [
        _rule(
            [""],
            [
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            READ,
        ),
        _rule(
            [""],
            [
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
            READ,
        ),
        _rule([""], ["namespaces"], READ),
        _rule(
            ["apps"],
            [
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        _rule(
            ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ
        ),
        _rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
        _rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
        _rule(["discovery.k8s.io"], ["endpointslices"], READ),
        _rule(["kumo.dev"], ["functions", "functions/status"], READ),
        # what metrics-server's system:aggregated-metrics-reader aggregates into view
        _rule(["metrics.k8s.io"], ["pods", "nodes"], ["get", "list"]),
    ]


def _edit_rules() -> list[PolicyRule]:
    return [
        _rule(
            [""],
            [
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            READ,
        ),
        _rule([""], ["serviceaccounts"], ["impersonate"]),
        _rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
        _rule([""], ["pods/eviction"], ["create"]),
        _rule(
            [""],
            [
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        _rule([""], ["serviceaccounts/token"], ["create"]),
        _rule(
            ["apps"],
            [
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        _rule(["autoscaling"], ["horizontalpodautoscalers"], WRITE),
        _rule(["batch"], ["cronjobs", "jobs"], WRITE),
        _rule(["policy"], ["poddisruptionbudgets"], WRITE),
        _rule(["kumo.dev"], ["functions", "functions/scale"], WRITE),
        *_view_rules(),
    ]


def _admin_rules() -> list[PolicyRule]:
    return [
        _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        _rule(["rbac.authorization.k8s.io"], ["rolebindings", "roles"], ALL),
        *_edit_rules(),
    ]


def _cluster_role(
    name: str, rules: list[PolicyRule], labels: dict[str, str] | None = None
) -> ClusterRole:
    role = ClusterRole(rules=rules)
    role.metadata.name = name
    role.metadata.labels = {**BOOTSTRAP_LABEL, **(labels or {})}
    role.metadata.annotations = dict(AUTOUPDATE)
    return role


def _binding(
    name: str, role: str, groups: list[str], users: list[str] | None = None
) -> ClusterRoleBinding:
    subjects = [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups]
    subjects += [{"apiGroup": RBAC_GROUP, "kind": "User", "name": u} for u in users or []]
    binding = ClusterRoleBinding.model_validate(
        {
            "metadata": {"name": name, "labels": BOOTSTRAP_LABEL, "annotations": AUTOUPDATE},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }
    )
    return binding


# ---- kumo's components -----------------------------------------------------------------------


def _events_rule() -> PolicyRule:
    """Kubernetes' eventsRule (kumo serves events in the core group only)."""
    return _rule([""], ["events"], ["create", "patch", "update"])


def scheduler_rules() -> list[PolicyRule]:
    """``system:kube-scheduler``: what kumo.platform.scheduler calls. Informers on pods,
    nodes and namespaces; the binding subresource; the PodScheduled=False condition
    (pods/status); FailedScheduling events; the leader-election Lease (kube-system)."""
    return [
        _events_rule(),
        # leader election: create the Lease, then read and renew only that one
        _rule([COORDINATION], ["leases"], ["create"]),
        _rule([COORDINATION], ["leases"], ["get", "update"], [SCHEDULER_LEASE]),
        _rule([""], ["nodes"], READ),
        _rule([""], ["pods"], READ),
        _rule([""], ["pods/binding"], ["create"]),
        _rule([""], ["pods/status"], ["patch", "update"]),
        # namespaces: for namespaceSelector in pod (anti-)affinity
        _rule([""], ["namespaces"], READ),
    ]


def controller_manager_rules() -> list[PolicyRule]:
    """``system:kube-controller-manager``: the union of what each controller in
    kumo.platform.controllers calls (Kubernetes gives each its own role and service account;
    kumo runs them under one identity). No create on RBAC objects, no escalate, bind or
    impersonate: the ``*`` rule has the verbs of Kubernetes' generic-garbage-collector
    role, and escalation prevention re-checks any RBAC change but ownerReferences and
    finalizers."""
    return [
        _events_rule(),
        # leader election (Kubernetes' rule; the controllers take this Lease when they elect)
        _rule([COORDINATION], ["leases"], ["create"]),
        _rule([COORDINATION], ["leases"], ["get", "update"], [CONTROLLER_MANAGER_LEASE]),
        # shared informers and the garbage collector (generic-garbage-collector); the
        # namespace controller's deletes and the resource-quota controller's counting
        _rule(["*"], ["*"], ["delete", "get", "list", "patch", "update", "watch"]),
        # deployment controller
        _rule(["apps"], ["deployments"], ["get", "list", "watch", "patch", "update"]),
        _rule(["apps"], ["deployments/status"], ["update"]),
        _rule(
            ["apps"],
            ["replicasets"],
            ["create", "delete", "get", "list", "patch", "update", "watch"],
        ),
        # replicaset and job controllers (pods), node lifecycle (eviction, NotReady status)
        _rule([""], ["pods"], ["create", "delete", "get", "list", "patch", "watch"]),
        _rule([""], ["pods/status"], ["update"]),
        _rule(["apps"], ["replicasets/status"], ["update"]),
        _rule(["batch"], ["jobs"], READ),
        _rule(["batch"], ["jobs/status"], ["update"]),
        # cronjob controller: Jobs from the template, its own status
        _rule(["batch"], ["cronjobs"], READ),
        _rule(["batch"], ["cronjobs/status"], ["update"]),
        _rule(["batch"], ["jobs"], ["create"]),
        # endpoints controller
        _rule([""], ["services"], READ),
        _rule([""], ["endpoints"], ["create", "delete", "get", "list", "update", "watch"]),
        # namespace controller
        _rule([""], ["namespaces"], READ),
        _rule([""], ["namespaces/finalize", "namespaces/status"], ["update"]),
        # node lifecycle controller: taints, the Ready=Unknown condition, leases it watches
        _rule([""], ["nodes"], ["get", "list", "watch", "patch"]),
        _rule([""], ["nodes/status"], ["update"]),
        _rule([COORDINATION], ["leases"], ["list", "watch"]),
        # resource quota controller
        _rule([""], ["resourcequotas"], READ),
        _rule([""], ["resourcequotas/status"], ["update"]),
        # horizontal pod autoscaler: any scale subresource, pod usage, its own status
        _rule(["*"], ["*/scale"], ["get", "update"]),
        _rule(["metrics.k8s.io"], ["pods"], ["list"]),
        _rule(["autoscaling"], ["horizontalpodautoscalers"], READ),
        _rule(["autoscaling"], ["horizontalpodautoscalers/status"], ["update"]),
        # disruption controller: budgets' status from the pods and their owners' scale
        _rule(["policy"], ["poddisruptionbudgets"], READ),
        _rule(["policy"], ["poddisruptionbudgets/status"], ["update"]),
        # service account controller and root CA publisher (kube-root-ca.crt)
        _rule([""], ["serviceaccounts"], ["create", "get", "list", "watch"]),
        _rule([""], ["configmaps"], ["create", "get", "list", "watch", "update"]),
    ]


def node_rules() -> list[PolicyRule]:
    """``system:node``: what the node agent (kumo.node) calls. The NodeRestriction admission
    plugin limits each node to its own Node, its own Lease and the pods bound to it. Secrets,
    ConfigMaps and service-account tokens are not here: the Node authorizer
    (kumo.auth.node_authorizer) gives a node those its pods use, and nothing else."""
    return [
        # registration and heartbeats: get / create the Node, merge labels, report status
        _rule([""], ["nodes"], ["create", "get", "patch", "update"]),
        _rule([""], ["nodes/status"], ["patch", "update"]),
        _rule([COORDINATION], ["leases"], ["create", "get", "patch", "update"]),
        # the pods bound to this node (watched with a spec.nodeName field selector); the
        # service proxy also follows every pod's IP
        _rule([""], ["pods"], READ),
        _rule([""], ["pods/status"], ["patch", "update"]),
        # finishing a graceful deletion (grace period 0 once the containers are gone)
        _rule([""], ["pods"], ["delete"]),
        _rule([""], ["events"], ["create", "patch", "update"]),
        # service environment variables, the service proxy and cluster DNS
        _rule([""], ["services", "endpoints"], READ),
    ]


def gateway_rules() -> list[PolicyRule]:
    """``system:kumo:gateway``: routes from Services and Endpoints; the cold-start
    activator's annotation on Functions; delegated authn/authz of /metrics scrapers."""
    return [
        _rule([""], ["services", "endpoints"], READ),
        _rule(["kumo.dev"], ["functions"], ["patch"]),
        _rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        _rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
    ]


def cluster_roles() -> list[ClusterRole]:
    return [
        _cluster_role(
            "cluster-admin",
            [
                PolicyRule(api_groups=["*"], resources=["*"], verbs=["*"]),
                PolicyRule(non_resource_urls=["*"], verbs=["*"]),
            ],
        ),
        _cluster_role("admin", _admin_rules(), {"kubernetes.io/bootstrapping": "rbac-defaults"}),
        _cluster_role("edit", _edit_rules()),
        _cluster_role("view", _view_rules()),
        _cluster_role(
            "system:discovery",
            [
                PolicyRule(
                    non_resource_urls=[
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ],
                    verbs=["get"],
                )
            ],
        ),
        _cluster_role(
            "system:basic-user",
            [
                _rule(
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    ["create"],
                ),
                _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
            ],
        ),
        _cluster_role(
            "system:public-info-viewer",
            [
                PolicyRule(
                    non_resource_urls=["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    verbs=["get"],
                )
            ],
        ),
        _cluster_role(
            "system:service-account-issuer-discovery",
            [
                PolicyRule(
                    non_resource_urls=["/.well-known/openid-configuration", "/openid/v1/jwks"],
                    verbs=["get"],
                )
            ],
        ),
        _cluster_role(
            "system:monitoring",
            [
                PolicyRule(
                    non_resource_urls=[
                        "/healthz",
                        "/healthz/*",
                        "/livez",
                        "/livez/*",
                        "/metrics",
                        "/readyz",
                        "/readyz/*",
                    ],
                    verbs=["get"],
                )
            ],
        ),
        _cluster_role("system:kube-scheduler", scheduler_rules()),
        _cluster_role("system:kube-controller-manager", controller_manager_rules()),
        _cluster_role("system:node", node_rules()),
        _cluster_role("system:kumo:gateway", gateway_rules()),
    ]


def cluster_role_bindings() -> list[ClusterRoleBinding]:
    return [
        _binding("cluster-admin", "cluster-admin", ["system:masters"]),
        _binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            ["system:authenticated", "system:unauthenticated"],
        ),
        _binding("system:monitoring", "system:monitoring", ["system:monitoring"]),
        _binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            ["system:serviceaccounts"],
        ),
        _binding("system:kube-scheduler", "system:kube-scheduler", [], [SCHEDULER_USER]),
        _binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            [],
            [CONTROLLER_MANAGER_USER],
        ),
        _binding("system:node", "system:node", [NODES]),
        _binding("system:kumo:gateway", "system:kumo:gateway", [], [GATEWAY_USER]),
    ]
