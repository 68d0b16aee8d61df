"""DefaultBinder: POST a v1 Binding to ``pods/{name}/binding``; the API server sets
``spec.nodeName`` and the PodScheduled condition in one write."""

from __future__ import annotations

from kumo.platform.scheduler.framework import BindPlugin, CycleState
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.status import SUCCESS, Status, error


def binding_body(pod: PodInfo, node_name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
    }


class DefaultBinder(BindPlugin):
    name = "DefaultBinder"

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        writer = self.handle.writer
        if writer is None:
            return error("no API writer configured")
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/binding"
        code, body = await writer.request("POST", path, binding_body(pod, node_name))
        if code in (200, 201):
            return SUCCESS
        return error(f"binding {pod.key} to {node_name}: HTTP {code}: {body[:300]!r}")
