"""kubectl-style output: tables per kind, ages, pod status, name/yaml/json output."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from kumo.model.registry import ResourceInfo

Obj = dict[str, Any]


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration: 45s, 5m30s, 3h20m, 26h, 3d5h, 45d, 2y30d."""
    seconds = int(max(seconds, 0))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    rest = days % 365
    return f"{years}y{rest}d" if rest else f"{years}y"


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    when = _parse_time(timestamp)
    if when is None:
        return "<unknown>"
    now = now or datetime.datetime.now(datetime.UTC)
    return human_duration((now - when).total_seconds())


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _spec(obj: Obj) -> Obj:
    spec: Obj = obj.get("spec") or {}
    return spec


def _status(obj: Obj) -> Obj:
    status: Obj = obj.get("status") or {}
    return status


def _none(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "<none>"
    return str(value)


def selector_text(selector: Obj | None) -> str:
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        values = ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{expr.get('key')} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr.get('key')} notin ({values})")
        elif op == "Exists":
            parts.append(str(expr.get("key")))
        elif op == "DoesNotExist":
            parts.append(f"!{expr.get('key')}")
    return ",".join(parts) or "<none>"


# ---- pods -----------------------------------------------------------------------------


def pod_status(pod: Obj) -> str:
    """The STATUS column kubectl shows for a pod."""
    status = _status(pod)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    init_statuses = status.get("initContainerStatuses") or []
    init_total = len(_spec(pod).get("initContainers") or [])
    initializing = False
    for index, cs in enumerate(init_statuses):
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            reason = "Init:" + (
                terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}"
            )
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{init_total}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated"):
                terminated = state["terminated"]
                reason = terminated.get("reason") or (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{terminated.get('exitCode')}"
                )
            elif state.get("running") and cs.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def pod_ready(pod: Obj) -> str:
    containers = _spec(pod).get("containers") or []
    ready = sum(1 for cs in _status(pod).get("containerStatuses") or [] if cs.get("ready"))
    return f"{ready}/{len(containers)}"


def pod_restarts(pod: Obj) -> str:
    statuses = _status(pod).get("containerStatuses") or []
    count = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    latest = None
    for cs in statuses:
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        when = _parse_time(finished)
        if when and (latest is None or when > latest):
            latest = when
    if count and latest is not None:
        return f"{count} ({age(latest.strftime('%Y-%m-%dT%H:%M:%SZ'))} ago)"
    return str(count)


def _condition(obj: Obj, kind: str) -> Obj | None:
    for condition in _status(obj).get("conditions") or []:
        if condition.get("type") == kind:
            found: Obj = condition
            return found
    return None


def node_status(node: Obj) -> str:
    ready = _condition(node, "Ready")
    text = (
        "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    )
    if _spec(node).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _ports(ports: Sequence[Obj]) -> str:
    parts = []
    for port in ports:
        text = str(port.get("port"))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(
        c.get("image", "") for c in containers
    )


def _endpoints(obj: Obj) -> str:
    out = []
    for subset in obj.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{"port": None}]:
                out.append(
                    f"{address.get('ip')}:{port.get('port')}"
                    if port.get("port")
                    else str(address.get("ip"))
                )
    if not out:
        return "<none>"
    shown = ",".join(out[:3])
    return shown + (f" + {len(out) - 3} more..." if len(out) > 3 else "")


def _job_status(job: Obj) -> str:
    for kind in ("Complete", "Failed", "Suspended"):
        condition = _condition(job, kind)
        if condition and condition.get("status") == "True":
            return kind
    return "Running"


def _job_duration(job: Obj) -> str:
    status = _status(job)
    start = _parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = _parse_time(status.get("completionTime")) or datetime.datetime.now(datetime.UTC)
    return human_duration((end - start).total_seconds())


def _hpa_targets(hpa: Obj) -> str:
    """kubectl's TARGETS column: ``cpu: 84%/60%`` per Resource metric, ``cpu(app): ...`` per
    ContainerResource metric, ``<unknown>`` until the autoscaler measured it."""
    current: dict[tuple[str, str, str], Obj] = {}
    for entry in _status(hpa).get("currentMetrics") or []:
        kind = str(entry.get("type"))
        source = entry.get("resource" if kind == "Resource" else "containerResource") or {}
        key = (kind, str(source.get("name")), str(source.get("container") or ""))
        current[key] = source.get("current") or {}
    parts = []
    for metric in _spec(hpa).get("metrics") or []:
        kind = str(metric.get("type"))
        if kind not in ("Resource", "ContainerResource"):
            parts.append(f"<{kind}>")
            continue
        source = metric.get("resource" if kind == "Resource" else "containerResource") or {}
        name, container = str(source.get("name")), str(source.get("container") or "")
        label = f"{name}({container})" if kind == "ContainerResource" else name
        target = source.get("target") or {}
        have = current.get((kind, name, container)) or {}
        if target.get("type") == "Utilization":
            now = have.get("averageUtilization")
            shown = f"{now}%" if now is not None else "<unknown>"
            parts.append(f"{label}: {shown}/{target.get('averageUtilization')}%")
        else:
            now = have.get("averageValue")
            wanted = target.get("averageValue") or target.get("value")
            parts.append(f"{label}: {now if now is not None else '<unknown>'}/{wanted}")
    return ", ".join(parts) or "<none>"


def _function_ready(fn: Obj) -> str:
    condition = _condition(fn, "Ready")
    return str(condition.get("status")) if condition else "Unknown"


def _subjects(binding: Obj, kind: str) -> str:
    names = []
    for subject in binding.get("subjects") or []:
        if subject.get("kind") == kind:
            names.append(
                f"{subject.get('namespace')}/{subject.get('name')}"
                if kind == "ServiceAccount"
                else str(subject.get("name"))
            )
    return ",".join(names)


Column = tuple[str, Callable[[Obj], str]]


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name", ""))


def quota_usage(quota: Obj, limits: bool) -> str:
    """kubectl's REQUEST / LIMIT cells: ``pods: 2/3, requests.cpu: 500m/1``."""
    hard = _status(quota).get("hard") or _spec(quota).get("hard") or {}
    used = _status(quota).get("used") or {}
    return ", ".join(
        f"{name}: {used.get(name, '0')}/{hard[name]}"
        for name in sorted(hard)
        if name.startswith("limits") == limits
    )


def _age(obj: Obj) -> str:
    return age(_meta(obj).get("creationTimestamp"))


# The -o wide columns of the kinds that run pods from a template (ReplicaSet, Deployment, Job).
_TEMPLATE_WIDE: list[Column] = [
    ("CONTAINERS", lambda o: _containers(_spec(o).get("template", {}).get("spec", {}))[0]),
    ("IMAGES", lambda o: _containers(_spec(o).get("template", {}).get("spec", {}))[1]),
    ("SELECTOR", lambda o: selector_text(_spec(o).get("selector"))),
]

# kubectl prints Roles and ClusterRoles alike, and so RoleBindings and ClusterRoleBindings.
_ROLE_COLUMNS: tuple[list[Column], list[Column]] = (
    [("NAME", _name), ("CREATED AT", lambda o: str(_meta(o).get("creationTimestamp", "")))],
    [],
)
_BINDING_COLUMNS: tuple[list[Column], list[Column]] = (
    [
        ("NAME", _name),
        (
            "ROLE",
            lambda o: f"{o.get('roleRef', {}).get('kind')}/{o.get('roleRef', {}).get('name')}",
        ),
        ("AGE", _age),
    ],
    [
        ("USERS", lambda o: _subjects(o, "User")),
        ("GROUPS", lambda o: _subjects(o, "Group")),
        ("SERVICEACCOUNTS", lambda o: _subjects(o, "ServiceAccount")),
    ],
)


COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {
    "Namespace": (
        [("NAME", _name), ("STATUS", lambda o: str(_status(o).get("phase", ""))), ("AGE", _age)],
        [],
    ),
    "Node": (
        [
            ("NAME", _name),
            ("STATUS", node_status),
            (
                "ROLES",
                lambda o: (
                    ",".join(
                        sorted(
                            k.split("/", 1)[1]
                            for k in (_meta(o).get("labels") or {})
                            if k.startswith("node-role.kubernetes.io/")
                        )
                    )
                    or "<none>"
                ),
            ),
            ("AGE", _age),
            ("VERSION", lambda o: str(_status(o).get("nodeInfo", {}).get("kubeletVersion", ""))),
        ],
        [
            (
                "INTERNAL-IP",
                lambda o: next(
                    (
                        a["address"]
                        for a in _status(o).get("addresses") or []
                        if a.get("type") == "InternalIP"
                    ),
                    "<none>",
                ),
            ),
            ("OS-IMAGE", lambda o: str(_status(o).get("nodeInfo", {}).get("osImage", ""))),
            (
                "KERNEL-VERSION",
                lambda o: str(_status(o).get("nodeInfo", {}).get("kernelVersion", "")),
            ),
            (
                "CONTAINER-RUNTIME",
                lambda o: str(_status(o).get("nodeInfo", {}).get("containerRuntimeVersion", "")),
            ),
        ],
    ),
    "Pod": (
        [
            ("NAME", _name),
            ("READY", pod_ready),
            ("STATUS", pod_status),
            ("RESTARTS", pod_restarts),
            ("AGE", _age),
        ],
        [
            ("IP", lambda o: _none(_status(o).get("podIP"))),
            ("NODE", lambda o: _none(_spec(o).get("nodeName"))),
            ("NOMINATED NODE", lambda o: _none(_status(o).get("nominatedNodeName"))),
            ("READINESS GATES", lambda o: "<none>"),
        ],
    ),
    "Service": (
        [
            ("NAME", _name),
            ("TYPE", lambda o: str(_spec(o).get("type", ""))),
            ("CLUSTER-IP", lambda o: _none(_spec(o).get("clusterIP"))),
            ("EXTERNAL-IP", lambda o: ",".join(_spec(o).get("externalIPs") or []) or "<none>"),
            ("PORT(S)", lambda o: _ports(_spec(o).get("ports") or [])),
            ("AGE", _age),
        ],
        [
            (
                "SELECTOR",
                lambda o: (
                    ",".join(
                        f"{k}={v}" for k, v in sorted((_spec(o).get("selector") or {}).items())
                    )
                    or "<none>"
                ),
            )
        ],
    ),
    "Endpoints": ([("NAME", _name), ("ENDPOINTS", _endpoints), ("AGE", _age)], []),
    "ConfigMap": (
        [
            ("NAME", _name),
            ("DATA", lambda o: str(len(o.get("data") or {}) + len(o.get("binaryData") or {}))),
            ("AGE", _age),
        ],
        [],
    ),
    "Secret": (
        [
            ("NAME", _name),
            ("TYPE", lambda o: str(o.get("type", ""))),
            ("DATA", lambda o: str(len(o.get("data") or {}))),
            ("AGE", _age),
        ],
        [],
    ),
    "ServiceAccount": (
        [("NAME", _name), ("SECRETS", lambda o: str(len(o.get("secrets") or []))), ("AGE", _age)],
        [],
    ),
    "Event": (
        [
            (
                "LAST SEEN",
                lambda o: age(
                    o.get("lastTimestamp")
                    or o.get("eventTime")
                    or _meta(o).get("creationTimestamp")
                ),
            ),
            ("TYPE", lambda o: str(o.get("type", ""))),
            ("REASON", lambda o: str(o.get("reason", ""))),
            (
                "OBJECT",
                lambda o: (
                    f"{str(o.get('involvedObject', {}).get('kind', '')).lower()}/{o.get('involvedObject', {}).get('name', '')}"
                ),
            ),
            ("MESSAGE", lambda o: str(o.get("message", ""))),
        ],
        [("COUNT", lambda o: str(o.get("count") or 1))],
    ),
    "ReplicaSet": (
        [
            ("NAME", _name),
            ("DESIRED", lambda o: str(_spec(o).get("replicas", 0))),
            ("CURRENT", lambda o: str(_status(o).get("replicas", 0))),
            ("READY", lambda o: str(_status(o).get("readyReplicas", 0))),
            ("AGE", _age),
        ],
        _TEMPLATE_WIDE,
    ),
    "Deployment": (
        [
            ("NAME", _name),
            (
                "READY",
                lambda o: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}",
            ),
            ("UP-TO-DATE", lambda o: str(_status(o).get("updatedReplicas", 0))),
            ("AVAILABLE", lambda o: str(_status(o).get("availableReplicas", 0))),
            ("AGE", _age),
        ],
        _TEMPLATE_WIDE,
    ),
    "Job": (
        [
            ("NAME", _name),
            ("STATUS", _job_status),
            (
                "COMPLETIONS",
                lambda o: f"{_status(o).get('succeeded', 0)}/{_spec(o).get('completions', 1)}",
            ),
            ("DURATION", _job_duration),
            ("AGE", _age),
        ],
        _TEMPLATE_WIDE,
    ),
    "CronJob": (
        [
            ("NAME", _name),
            ("SCHEDULE", lambda o: str(_spec(o).get("schedule", ""))),
            ("TIMEZONE", lambda o: _none(_spec(o).get("timeZone"))),
            ("SUSPEND", lambda o: str(bool(_spec(o).get("suspend"))).capitalize()),
            ("ACTIVE", lambda o: str(len(_status(o).get("active") or []))),
            (
                "LAST SCHEDULE",
                lambda o: (
                    age(_status(o)["lastScheduleTime"])
                    if _status(o).get("lastScheduleTime")
                    else "<none>"
                ),
            ),
            ("AGE", _age),
        ],
        [],
    ),
    "Lease": (
        [
            ("NAME", _name),
            ("HOLDER", lambda o: str(_spec(o).get("holderIdentity", ""))),
            ("AGE", _age),
        ],
        [],
    ),
    "Role": _ROLE_COLUMNS,
    "ClusterRole": _ROLE_COLUMNS,
    "RoleBinding": _BINDING_COLUMNS,
    "ClusterRoleBinding": _BINDING_COLUMNS,
    "HorizontalPodAutoscaler": (
        [
            ("NAME", _name),
            (
                "REFERENCE",
                lambda o: (
                    f"{_spec(o).get('scaleTargetRef', {}).get('kind')}/{_spec(o).get('scaleTargetRef', {}).get('name')}"
                ),
            ),
            ("TARGETS", _hpa_targets),
            ("MINPODS", lambda o: str(_spec(o).get("minReplicas", 1))),
            ("MAXPODS", lambda o: str(_spec(o).get("maxReplicas", ""))),
            ("REPLICAS", lambda o: str(_status(o).get("currentReplicas", 0))),
            ("AGE", _age),
        ],
        [],
    ),
    "PodDisruptionBudget": (
        [
            ("NAME", _name),
            ("MIN AVAILABLE", lambda o: str(_spec(o).get("minAvailable", "N/A"))),
            ("MAX UNAVAILABLE", lambda o: str(_spec(o).get("maxUnavailable", "N/A"))),
            ("ALLOWED DISRUPTIONS", lambda o: str(_status(o).get("disruptionsAllowed", 0))),
            ("AGE", _age),
        ],
        [],
    ),
    "ResourceQuota": (
        [
            ("NAME", _name),
            ("AGE", _age),
            ("REQUEST", lambda o: quota_usage(o, limits=False)),
            ("LIMIT", lambda o: quota_usage(o, limits=True)),
        ],
        [],
    ),
    "LimitRange": (
        [("NAME", _name), ("CREATED AT", lambda o: str(_meta(o).get("creationTimestamp", "")))],
        [],
    ),
    "Function": (
        [
            ("NAME", _name),
            ("READY", _function_ready),
            (
                "REPLICAS",
                lambda o: f"{_status(o).get('readyReplicas', 0)}/{_status(o).get('replicas', 0)}",
            ),
            ("URL", lambda o: _none(_status(o).get("url"))),
            ("AGE", _age),
        ],
        [("IMAGE", lambda o: _none(_status(o).get("image") or _spec(o).get("image")))],
    ),
}


def qualified_name(info: ResourceInfo, obj: Obj) -> str:
    return f"{info.kind_group}/{_name(obj)}"


def table(
    info: ResourceInfo,
    items: Sequence[Obj],
    *,
    wide: bool = False,
    all_namespaces: bool = False,
    prefix_kind: bool = False,
    show_labels: bool = False,
    headers: bool = True,
) -> list[list[str]]:
    base, extra = COLUMNS.get(info.kind, ([("NAME", _name), ("AGE", _age)], []))
    columns = list(base) + (list(extra) if wide else [])
    if prefix_kind:
        columns[0] = ("NAME", lambda o: qualified_name(info, o))
    if show_labels:
        columns.append(
            (
                "LABELS",
                lambda o: (
                    ",".join(f"{k}={v}" for k, v in sorted((_meta(o).get("labels") or {}).items()))
                    or "<none>"
                ),
            )
        )
    rows: list[list[str]] = []
    if headers:
        rows.append(
            (["NAMESPACE"] if all_namespaces and info.namespaced else []) + [c[0] for c in columns]
        )
    for obj in items:
        row = [_meta(obj).get("namespace", "")] if all_namespaces and info.namespaced else []
        row.extend(fn(obj) for _, fn in columns)
        rows.append(row)
    return rows


def render(rows: Sequence[Sequence[str]], widths: list[int] | None = None) -> str:
    """Columns padded to their widest cell, separated by three spaces (kubectl's look)."""
    if not rows:
        return ""
    count = max(len(r) for r in rows)
    widths = widths or [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(count)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def as_list(items: Sequence[Obj]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": list(items),
    }


def dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=4)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")
