"""``kumo describe``: a readable page per object, with its events. Secret values never shown."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import yaml

from kumo.cli.printers import age, node_status, pod_status, render, selector_text
from kumo.model.registry import ResourceInfo

Obj = dict[str, Any]
# kubectl describe leaves this out: it repeats the object (a Secret's data included).
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _pairs(values: dict[str, str] | None) -> list[str]:
    if not values:
        return ["<none>"]
    return [f"{k}={v}" for k, v in sorted(values.items())]


class Page:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def field(self, label: str, value: Any, indent: int = 0) -> None:
        pad = "  " * indent
        values = value if isinstance(value, list) else [value]
        if not values:
            values = ["<none>"]
        first, *rest = [str(v) for v in values]
        self.lines.append(f"{pad}{label + ':':<21} {first}")
        self.lines.extend(f"{pad}{'':<21} {v}" for v in rest)

    def heading(self, text: str, indent: int = 0) -> None:
        self.lines.append("  " * indent + text)

    def block(self, data: Any, indent: int = 1) -> None:
        if data in (None, {}, []):
            self.lines.append("  " * indent + "<none>")
            return
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
        self.lines.extend("  " * indent + line for line in text.splitlines())

    def text(self) -> str:
        return "\n".join(self.lines)


def _metadata(page: Page, obj: Obj, info: ResourceInfo) -> None:
    meta = obj.get("metadata") or {}
    page.field("Name", meta.get("name", ""))
    if info.namespaced:
        page.field("Namespace", meta.get("namespace", ""))
    page.field("Labels", _pairs(meta.get("labels")))
    annotations = {
        k: (v if len(v) <= 80 else v[:77] + "...")
        for k, v in (meta.get("annotations") or {}).items()
        if k != LAST_APPLIED
    }
    page.field("Annotations", _pairs(annotations))
    page.field("CreationTimestamp", meta.get("creationTimestamp", "<unknown>"))
    if meta.get("deletionTimestamp"):
        page.field("DeletionTimestamp", meta["deletionTimestamp"])
    if meta.get("finalizers"):
        page.field("Finalizers", meta["finalizers"])
    owners = [f"{o.get('kind')}/{o.get('name')}" for o in meta.get("ownerReferences") or []]
    if owners:
        page.field("Controlled By" if len(owners) == 1 else "Owners", owners)


def _conditions(page: Page, obj: Obj) -> None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    if not conditions:
        return
    page.heading("Conditions:")
    rows = [["Type", "Status", "Reason", "Message"], ["----", "------", "------", "-------"]]
    rows.extend(
        [
            str(c.get("type", "")),
            str(c.get("status", "")),
            str(c.get("reason", "")),
            str(c.get("message", "")),
        ]
        for c in conditions
    )
    page.lines.extend("  " + line for line in render(rows).splitlines())


def _containers(page: Page, spec: Obj, statuses: list[Obj], title: str = "Containers") -> None:
    containers = spec.get("containers")
    if not containers:
        return
    by_name = {s.get("name"): s for s in statuses}
    page.heading(f"{title}:")
    for container in containers:
        page.heading(f"{container.get('name')}:", 1)
        page.field("Image", container.get("image", ""), 2)
        ports = [
            f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}"
            for p in container.get("ports") or []
        ]
        page.field("Port", ports or ["<none>"], 2)
        if container.get("command"):
            page.field("Command", container["command"], 2)
        if container.get("args"):
            page.field("Args", container["args"], 2)
        status = by_name.get(container.get("name"))
        if status:
            state = status.get("state") or {}
            for name, detail in state.items():
                page.field("State", name.capitalize(), 2)
                for key in ("reason", "message", "exitCode", "startedAt", "finishedAt"):
                    if key in (detail or {}):
                        page.field(key[0].upper() + key[1:], detail[key], 3)
            last = (status.get("lastState") or {}).get("terminated")
            if last:
                page.field("Last State", "Terminated", 2)
                for key in ("reason", "exitCode", "startedAt", "finishedAt"):
                    if key in last:
                        page.field(key[0].upper() + key[1:], last[key], 3)
            page.field("Ready", str(status.get("ready", False)), 2)
            page.field("Restart Count", str(status.get("restartCount", 0)), 2)
        resources = container.get("resources") or {}
        for kind in ("limits", "requests"):
            if resources.get(kind):
                page.field(kind.capitalize(), [f"{k}: {v}" for k, v in resources[kind].items()], 2)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if container.get(probe):
                page.field(
                    probe.replace("Probe", "").capitalize(), _probe_text(container[probe]), 2
                )
        env = [
            f"{e.get('name')}: {e.get('value', '<set from ' + next(iter(e.get('valueFrom') or {'?': 0})) + '>')}"
            for e in container.get("env") or []
        ]
        page.field("Environment", env or ["<none>"], 2)
        mounts = [
            f"{m.get('mountPath')} from {m.get('name')} ({'ro' if m.get('readOnly') else 'rw'})"
            for m in container.get("volumeMounts") or []
        ]
        page.field("Mounts", mounts or ["<none>"], 2)


def _probe_text(probe: Obj) -> str:
    if probe.get("httpGet"):
        handler = f"http-get {probe['httpGet'].get('scheme', 'HTTP').lower()}://:{probe['httpGet'].get('port')}{probe['httpGet'].get('path', '/')}"
    elif probe.get("tcpSocket"):
        handler = f"tcp-socket :{probe['tcpSocket'].get('port')}"
    elif probe.get("exec"):
        handler = "exec " + str(probe["exec"].get("command"))
    else:
        handler = "<unknown>"
    return (
        f"{handler} delay={probe.get('initialDelaySeconds', 0)}s timeout={probe.get('timeoutSeconds', 1)}s"
        f" period={probe.get('periodSeconds', 10)}s #success={probe.get('successThreshold', 1)}"
        f" #failure={probe.get('failureThreshold', 3)}"
    )


def _pod(page: Page, pod: Obj) -> None:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    page.field("Service Account", spec.get("serviceAccountName", "default"))
    page.field("Node", spec.get("nodeName") or "<none>")
    page.field("Start Time", status.get("startTime", "<none>"))
    page.field("Status", pod_status(pod))
    page.field("IP", status.get("podIP") or "<none>")
    published = [
        f"{p.get('containerName')}:{p.get('containerPort')} -> {p.get('hostIP')}:{p.get('hostPort')}"
        for p in status.get("publishedPorts") or []
    ]
    if published:
        page.field("Published Ports", published)
    page.field("QoS Class", status.get("qosClass", ""))
    init = {"containers": spec.get("initContainers")}
    _containers(page, init, status.get("initContainerStatuses") or [], "Init Containers")
    _containers(page, spec, status.get("containerStatuses") or [])
    _conditions(page, pod)
    volumes = spec.get("volumes") or []
    if volumes:
        page.heading("Volumes:")
        for volume in volumes:
            kind = next((k for k in volume if k != "name"), "unknown")
            page.field(volume.get("name", ""), kind, 1)
    page.field("Node-Selectors", _pairs(spec.get("nodeSelector")))
    tolerations = [
        f"{t.get('key', '')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect', '')} op={t.get('operator', 'Equal')}"
        for t in spec.get("tolerations") or []
    ]
    page.field("Tolerations", tolerations or ["<none>"])


def _deployment(page: Page, obj: Obj) -> None:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    page.field("Selector", selector_text(spec.get("selector")))
    page.field(
        "Replicas",
        f"{spec.get('replicas', 0)} desired | {status.get('updatedReplicas', 0)} updated | {status.get('replicas', 0)} total"
        f" | {status.get('availableReplicas', 0)} available | {status.get('unavailableReplicas', 0)} unavailable",
    )
    strategy = spec.get("strategy") or {}
    page.field("StrategyType", strategy.get("type", ""))
    page.field("MinReadySeconds", str(spec.get("minReadySeconds", 0)))
    rolling = strategy.get("rollingUpdate")
    if rolling:
        page.field(
            "RollingUpdateStrategy",
            f"{rolling.get('maxUnavailable')} max unavailable, {rolling.get('maxSurge')} max surge",
        )
    template = spec.get("template") or {}
    page.heading("Pod Template:")
    page.field("Labels", _pairs((template.get("metadata") or {}).get("labels")), 1)
    sub = Page()
    _containers(sub, template.get("spec") or {}, [])
    page.lines.extend("  " + line for line in sub.lines)
    _conditions(page, obj)


def _service(page: Page, obj: Obj) -> None:
    spec = obj.get("spec") or {}
    page.field("Selector", _pairs(spec.get("selector")))
    page.field("Type", spec.get("type", ""))
    page.field("IP", spec.get("clusterIP") or "<none>")
    for port in spec.get("ports") or []:
        page.field(
            "Port",
            f"{port.get('name') or '<unset>'}  {port.get('port')}/{port.get('protocol', 'TCP')}",
        )
        page.field("TargetPort", f"{port.get('targetPort')}/{port.get('protocol', 'TCP')}")
    page.field("Session Affinity", spec.get("sessionAffinity", "None"))


def _node(page: Page, obj: Obj) -> None:
    status = obj.get("status") or {}
    page.field("Status", node_status(obj))
    taints = [
        f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
        for t in (obj.get("spec") or {}).get("taints") or []
    ]
    page.field("Taints", taints or ["<none>"])
    page.field("Unschedulable", str(bool((obj.get("spec") or {}).get("unschedulable"))))
    _conditions(page, obj)
    page.heading("Addresses:")
    for address in status.get("addresses") or []:
        page.field(address.get("type", ""), address.get("address", ""), 1)
    for section in ("capacity", "allocatable"):
        page.heading(f"{section.capitalize()}:")
        for key, value in (status.get(section) or {}).items():
            page.field(key, value, 1)
    info = status.get("nodeInfo") or {}
    if info:
        page.heading("System Info:")
        for key, value in info.items():
            page.field(key[0].upper() + key[1:], value, 1)


def _secret(page: Page, obj: Obj) -> None:
    page.field("Type", obj.get("type", "Opaque"))
    page.heading("Data")
    page.heading("====")
    for key, value in sorted((obj.get("data") or {}).items()):
        try:
            size = len(base64.b64decode(value))
        except (binascii.Error, ValueError):
            size = len(value)
        page.heading(f"{key}:  {size} bytes")


def _configmap(page: Page, obj: Obj) -> None:
    page.heading("Data")
    page.heading("====")
    for key, value in sorted((obj.get("data") or {}).items()):
        page.heading(f"{key}:")
        page.heading("----")
        page.lines.extend(str(value).splitlines() or [""])
        page.heading("")
    binary = obj.get("binaryData") or {}
    if binary:
        page.heading("BinaryData")
        page.heading("====")
        for key, value in sorted(binary.items()):
            page.heading(f"{key}: {len(base64.b64decode(value))} bytes")


_SCOPE_NOTES = {
    "BestEffort": "Matches all pods that do not have resource requirements set."
    " These pods have a best effort quality of service.",
    "NotBestEffort": "Matches all pods that have at least one resource requirement set."
    " These pods have a burstable or guaranteed quality of service.",
    "Terminating": "Matches all pods that have an active deadline."
    " These pods have a limited lifespan on a node before being actively terminated"
    " by the system.",
    "NotTerminating": "Matches all pods that do not have an active deadline."
    " These pods usually include long running pods whose container command is not"
    " expected to terminate.",
}


def _resource_quota(page: Page, obj: Obj) -> None:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    scopes = spec.get("scopes") or []
    if scopes:
        page.field("Scopes", ", ".join(scopes))
        for scope in scopes:
            page.heading(f" * {_SCOPE_NOTES.get(scope, scope)}")
    hard = status.get("hard") or spec.get("hard") or {}
    used = status.get("used") or {}
    rows = [["Resource", "Used", "Hard"], ["--------", "----", "----"]]
    rows.extend([name, str(used.get(name, "0")), str(hard[name])] for name in sorted(hard))
    page.lines.extend(render(rows).splitlines())


def _limit_range(page: Page, obj: Obj) -> None:
    rows = [
        [
            "Type",
            "Resource",
            "Min",
            "Max",
            "Default Request",
            "Default Limit",
            "Max Limit/Request Ratio",
        ],
        [
            "----",
            "--------",
            "---",
            "---",
            "---------------",
            "-------------",
            "-----------------------",
        ],
    ]
    for item in (obj.get("spec") or {}).get("limits") or []:
        fields = ("min", "max", "defaultRequest", "default", "maxLimitRequestRatio")
        names = sorted({name for f in fields for name in item.get(f) or {}})
        for name in names:
            rows.append(
                [str(item.get("type", "")), name]
                + [str((item.get(f) or {}).get(name, "-")) for f in fields]
            )
    page.lines.extend(render(rows).splitlines())


def _generic(page: Page, obj: Obj) -> None:
    for section in [k for k in obj if k not in ("apiVersion", "kind", "metadata")]:
        if section == "status":
            continue
        page.heading(f"{section[0].upper() + section[1:]}:")
        page.block(obj[section])
    if obj.get("status"):
        status = {k: v for k, v in obj["status"].items() if k != "conditions"}
        if status:
            page.heading("Status:")
            page.block(status)
        _conditions(page, obj)


_SECTIONS = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _deployment,
    "Service": _service,
    "Node": _node,
    "Secret": _secret,
    "ConfigMap": _configmap,
    "ResourceQuota": _resource_quota,
    "LimitRange": _limit_range,
}


def describe(info: ResourceInfo, obj: Obj, events: list[Obj]) -> str:
    page = Page()
    _metadata(page, obj, info)
    _SECTIONS.get(info.kind, _generic)(page, obj)
    if info.kind in ("Event",):
        return page.text()
    if events:
        page.heading("Events:")
        rows = [
            ["Type", "Reason", "Age", "From", "Message"],
            ["----", "------", "----", "----", "-------"],
        ]
        for event in events:
            when = (
                event.get("lastTimestamp")
                or event.get("eventTime")
                or (event.get("metadata") or {}).get("creationTimestamp")
            )
            count = int(event.get("count") or 1)
            shown = age(when) + (f" (x{count})" if count > 1 else "")
            source = (
                (event.get("source") or {}).get("component")
                or event.get("reportingComponent")
                or ""
            )
            rows.append(
                [
                    str(event.get("type", "")),
                    str(event.get("reason", "")),
                    shown,
                    str(source),
                    str(event.get("message", "")),
                ]
            )
        page.lines.extend("  " + line for line in render(rows).splitlines())
    else:
        page.field("Events", "<none>")
    return page.text()
