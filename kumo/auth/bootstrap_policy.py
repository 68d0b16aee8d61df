"""The default ClusterRoles and ClusterRoleBindings, as Kubernetes ships them
(cluster-admin, admin, edit, view and the system: roles), limited to what kumo serves plus
the subresources kumo adds."""

from __future__ import annotations

from kumo.model.rbac import ClusterRole, ClusterRoleBinding, PolicyRule

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
ALL = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> PolicyRule:
    return PolicyRule(api_groups=groups, resources=resources, verbs=verbs)


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
        _rule(["discovery.k8s.io"], ["endpointslices"], READ),
        _rule(["kumo.dev"], ["functions", "functions/status"], READ),
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


def _binding(name: str, role: str, groups: list[str]) -> ClusterRoleBinding:
    binding = ClusterRoleBinding.model_validate(
        {
            "metadata": {"name": name, "labels": BOOTSTRAP_LABEL, "annotations": AUTOUPDATE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}
                for g in groups
            ],
        }
    )
    return binding


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
    ]
