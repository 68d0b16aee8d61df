"""kumo's resource types (pydantic v2), defaults, validation and Kubernetes conversion."""

from kumo.model.apps import Deployment, ReplicaSet
from kumo.model.autoscaling import HorizontalPodAutoscaler
from kumo.model.base import (
    Condition,
    KumoModel,
    LabelSelector,
    ObjectMeta,
    OwnerReference,
    Resource,
    Status,
    to_wire,
    unknown_fields,
)
from kumo.model.batch import Job
from kumo.model.coordination import Lease
from kumo.model.core import (
    ConfigMap,
    Container,
    Endpoints,
    Event,
    Namespace,
    Node,
    Pod,
    PodSpec,
    Secret,
    Service,
    ServiceAccount,
)
from kumo.model.functions import Function
from kumo.model.policy import PodDisruptionBudget
from kumo.model.rbac import ClusterRole, ClusterRoleBinding, Role, RoleBinding

__all__ = [
    "ClusterRole",
    "ClusterRoleBinding",
    "Condition",
    "ConfigMap",
    "Container",
    "Deployment",
    "Endpoints",
    "Event",
    "Function",
    "HorizontalPodAutoscaler",
    "Job",
    "KumoModel",
    "LabelSelector",
    "Lease",
    "Namespace",
    "Node",
    "ObjectMeta",
    "OwnerReference",
    "Pod",
    "PodDisruptionBudget",
    "PodSpec",
    "ReplicaSet",
    "Resource",
    "Role",
    "RoleBinding",
    "Secret",
    "Service",
    "ServiceAccount",
    "Status",
    "to_wire",
    "unknown_fields",
]
