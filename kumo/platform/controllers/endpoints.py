"""The Endpoints controller: for every Service with a selector, an Endpoints object of the
same name listing where its pods can be reached.

kumo's pods are reached through ports the node agent publishes on the node's address, not
through pod IPs. So an address is the node-side address of the pod's published port (the
published ``hostIP``, or the pod's ``status.hostIP`` when the port is published on every
address), and an endpoint port is the published ``hostPort`` of the container port that the
Service port's ``targetPort`` resolves to (a number, or the name of a container port).

What it promises:
- Ready pods are in ``addresses``, others in ``notReadyAddresses`` (all in ``addresses``
  with ``publishNotReadyAddresses``); finished pods and pods being deleted are left out
  (kept with ``publishNotReadyAddresses``, as Kubernetes does);
- pods with different published ports land in different subsets: one subset per distinct
  port list; a pod with no published port for a Service port is not listed for it;
- each address has ``nodeName`` and a ``targetRef`` to its pod;
- the object is built in a stable order and written only when it changes; it carries the
  Service's labels; it is deleted with its Service. Services without a selector are not
  touched (their Endpoints are the user's).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kumo.client import ApiException
from kumo.model.base import to_wire
from kumo.model.core import Endpoints, Pod, Service
from kumo.model.registry import for_model
from kumo.model.selectors import selector_from_map
from kumo.platform.controllers.controller_utils import (
    Obj,
    being_deleted,
    is_pod_ready,
    is_pod_terminal,
    labels_of,
    meta,
    name_of,
    namespace_of,
    spec,
    status,
    uid_of,
)
from kumo.platform.controllers.informer import EventHandler, object_key, split_key
from kumo.platform.controllers.runner import Result
from kumo.platform.controllers.workload import WorkloadController

log = logging.getLogger(__name__)

ENDPOINTS_INFO = for_model(Endpoints)
HEADLESS_LABEL = "service.kubernetes.io/headless"
_UNSPECIFIED = ("", "0.0.0.0", "::")

# ---- building (pure) ---------------------------------------------------------------------


def resolve_target_port(pod: Obj, service_port: Obj) -> int | None:
    """The container port a Service port sends to on ``pod`` (Kubernetes' FindPort)."""
    target: Any = service_port.get("targetPort")
    if target is None:
        target = service_port.get("port")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if not isinstance(target, str) or not target:
        return None
    protocol = service_port.get("protocol") or "TCP"
    for container in spec(pod).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                value = port.get("containerPort")
                return value if isinstance(value, int) else None
    return None


def published_port(pod: Obj, container_port: int, protocol: str) -> Obj | None:
    for entry in status(pod).get("publishedPorts") or []:
        if (
            isinstance(entry, dict)
            and entry.get("containerPort") == container_port
            and (entry.get("protocol") or "TCP") == protocol
        ):
            return entry
    return None


def include_pod(pod: Obj, publish_not_ready: bool) -> bool:
    """Kubernetes' ShouldPodBeInEndpoints, for kumo's addressing (a node address, not a
    pod IP, is required)."""
    if is_pod_terminal(pod):
        return False
    if being_deleted(pod) and not publish_not_ready:
        return False
    return bool(status(pod).get("hostIP") or status(pod).get("publishedPorts"))


def build_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    """The Endpoints subsets of ``service`` over the pods its selector matches, sorted."""
    svc_spec = spec(service)
    service_ports = [p for p in svc_spec.get("ports") or [] if isinstance(p, dict)]
    publish_not_ready = bool(svc_spec.get("publishNotReadyAddresses"))
    # (ip, pod uid) -> (address, ready, ports)
    entries: dict[tuple[str, str], tuple[Obj, bool, list[Obj]]] = {}
    for pod in pods:
        if not include_pod(pod, publish_not_ready):
            continue
        ready = publish_not_ready or is_pod_ready(pod)
        for service_port in service_ports:
            container_port = resolve_target_port(pod, service_port)
            if container_port is None:
                continue
            protocol = service_port.get("protocol") or "TCP"
            published = published_port(pod, container_port, protocol)
            if published is None or not isinstance(published.get("hostPort"), int):
                continue
            ip = str(published.get("hostIP") or "")
            if ip in _UNSPECIFIED:
                ip = str(status(pod).get("hostIP") or "")
            if not ip:
                continue
            port: Obj = {"port": published["hostPort"], "protocol": protocol}
            if service_port.get("name"):
                port["name"] = service_port["name"]
            if service_port.get("appProtocol"):
                port["appProtocol"] = service_port["appProtocol"]
            key = (ip, uid_of(pod))
            if key not in entries:
                address: Obj = {
                    "ip": ip,
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": namespace_of(pod),
                        "name": name_of(pod),
                        "uid": uid_of(pod),
                    },
                }
                if spec(pod).get("nodeName"):
                    address["nodeName"] = spec(pod)["nodeName"]
                entries[key] = (address, ready, [])
            entries[key][2].append(port)
    groups: dict[str, tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for address, ready, ports in entries.values():
        ports_sorted = sorted(ports, key=lambda p: (str(p.get("name", "")), p["port"]))
        group_key = json.dumps(ports_sorted, sort_keys=True)
        ready_list, not_ready_list, _ = groups.setdefault(group_key, ([], [], ports_sorted))
        (ready_list if ready else not_ready_list).append(address)
    subsets: list[Obj] = []
    for group_key in sorted(groups):
        ready_list, not_ready_list, ports_sorted = groups[group_key]
        subset: Obj = {}
        if ready_list:
            subset["addresses"] = sorted(ready_list, key=_address_order)
        if not_ready_list:
            subset["notReadyAddresses"] = sorted(not_ready_list, key=_address_order)
        subset["ports"] = ports_sorted
        subsets.append(subset)
    return subsets


def _address_order(address: Obj) -> tuple[str, str]:
    return (str(address.get("ip")), str((address.get("targetRef") or {}).get("name")))


def endpoints_labels(service: Obj) -> dict[str, str]:
    labels = dict(labels_of(service))
    if spec(service).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


def normalized(subsets: Any) -> Any:
    """Subsets as the API stores them, for comparing what exists with what is wanted."""
    model = Endpoints.model_validate({"subsets": subsets or []})
    return to_wire(model).get("subsets") or []


def pod_endpoint_fields(pod: Obj) -> Any:
    """What of a pod can change its endpoints (so other pod updates cause no work)."""
    return (
        labels_of(pod),
        is_pod_ready(pod),
        being_deleted(pod),
        is_pod_terminal(pod),
        status(pod).get("hostIP"),
        status(pod).get("publishedPorts"),
        spec(pod).get("nodeName"),
    )


# ---- the controller ----------------------------------------------------------------------


class EndpointsController(WorkloadController):
    """Queue keys are ``namespace/name`` of Services."""

    name = "endpoints"
    workers = 3

    def setup(self) -> None:
        self.services = self.informers.informer(Service)
        self.pods = self.informers.informer(Pod)
        self.endpoints = self.informers.informer(Endpoints)
        self.services.add_event_handler(self.enqueue_handler())
        self.pods.add_event_handler(
            EventHandler(
                on_add=self._pod_changed,
                on_update=self._pod_updated,
                on_delete=self._pod_changed,
            )
        )
        self.endpoints.add_event_handler(
            EventHandler(
                on_update=lambda old, new: self._endpoints_changed(new),
                on_delete=self._endpoints_changed,
            )
        )

    def _services_for(self, pod: Obj) -> list[Obj]:
        labels = labels_of(pod)
        found = []
        for service in self.services.list(namespace_of(pod)):
            selector = spec(service).get("selector")
            if selector and selector_from_map(selector).matches(labels):
                found.append(service)
        return found

    def _pod_changed(self, pod: Obj) -> None:
        for service in self._services_for(pod):
            self.enqueue(service)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if pod_endpoint_fields(old) == pod_endpoint_fields(new):
            return
        keys = {object_key(s) for s in self._services_for(new)}
        if labels_of(old) != labels_of(new):
            keys |= {object_key(s) for s in self._services_for(old)}
        for key in keys:
            self.queue.add(key)

    def _endpoints_changed(self, endpoints: Obj) -> None:
        service = self.services.get(namespace_of(endpoints), name_of(endpoints))
        if service is not None and spec(service).get("selector"):
            self.enqueue(service)

    async def reconcile(self, key: str) -> Result | None:
        await self.expectations.wait(key)
        namespace, name = split_key(key)
        service = self.services.get(namespace, name)
        current = self.endpoints.get(namespace, name)
        if service is None:
            self.expectations.forget(key)
            if current is not None:
                await self._delete(key, namespace, name)
            return None
        selector = spec(service).get("selector")
        if not selector:
            return None
        matcher = selector_from_map(selector)
        pods = [p for p in self.pods.list(namespace) if matcher.matches(labels_of(p))]
        subsets = build_subsets(service, pods)
        labels = endpoints_labels(service)
        if current is None:
            body: Obj = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace},
                "subsets": subsets,
            }
            if labels:
                body["metadata"]["labels"] = labels
            try:
                created = await self.client.create_raw(body, namespace)
            except ApiException as exc:
                if exc.already_exists:
                    raise RuntimeError(f"{key}: Endpoints exist but are not cached yet") from exc
                if exc.code == 403 and "being terminated" in exc.message:
                    return None
                raise
            self.wrote(key, self.endpoints, created)
            return None
        if (
            normalized(current.get("subsets")) == normalized(subsets)
            and labels_of(current) == labels
        ):
            return None
        updated = {**current, "subsets": subsets}
        updated["metadata"] = {**meta(current), "labels": labels or None}
        if not labels:
            updated["metadata"].pop("labels")
        try:
            written = await self.client.replace_raw(updated, namespace)
        except ApiException as exc:
            if exc.not_found:
                return None
            raise
        self.wrote(key, self.endpoints, written)
        return None

    async def _delete(self, key: str, namespace: str, name: str) -> None:
        try:
            deleted = await self.client.delete_raw(ENDPOINTS_INFO, name, namespace)
        except ApiException as exc:
            if exc.not_found:
                return
            raise
        self.wrote(key, self.endpoints, deleted)
