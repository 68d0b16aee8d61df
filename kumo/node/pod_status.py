"""A pod's status from what runs on the node (pure functions, Kubernetes' rules).

The pod worker gathers, per container of the spec, the runtime's latest and previous
attempt plus what it decided itself (a waiting reason such as CrashLoopBackOff or
ErrImagePull, probe results); these functions turn that into the wire form of
``status``: phase, conditions, container statuses, IPs, published ports.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kumo.node.runtime import ContainerState, ContainerStatus, ContainerSummary

__all__ = [
    "CONTAINER_ID_PREFIX",
    "MANAGED_CONDITIONS",
    "Attempt",
    "ContainerView",
    "build_status",
    "compute_conditions",
    "compute_phase",
    "container_status",
    "initialized",
    "terminated_reason",
]

#: Container ids in statuses read ``podman://<id>`` (``<runtime>://<id>`` as in Kubernetes).
CONTAINER_ID_PREFIX = "podman://"

MANAGED_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
_TERMINAL = ("Succeeded", "Failed")
_START_ERROR_EXIT = 128


def _time(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One runtime container (one attempt) of a pod's container."""

    id: str
    attempt: int
    state: ContainerState
    image_id: str
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    exit_code: int | None
    oom_killed: bool = False
    error: str = ""
    spec_hash: str = ""
    created_at: datetime.datetime | None = None

    @classmethod
    def of(cls, summary: ContainerSummary, spec_hash: str = "") -> Attempt:
        oom_killed, error = False, ""
        if isinstance(summary, ContainerStatus):
            oom_killed, error = summary.oom_killed, summary.error
        return cls(
            id=summary.id,
            attempt=summary.attempt,
            state=summary.state,
            image_id=summary.image_id,
            started_at=summary.started_at,
            finished_at=summary.finished_at,
            exit_code=summary.exit_code,
            oom_killed=oom_killed,
            error=error,
            spec_hash=spec_hash,
            created_at=summary.created_at,
        )

    @property
    def running(self) -> bool:
        return self.state in (ContainerState.RUNNING, ContainerState.PAUSED)

    @property
    def start_failed(self) -> bool:
        """Created but its process could not be started."""
        return self.state == ContainerState.CREATED and bool(self.error)

    @property
    def finished(self) -> bool:
        """It ran and stopped, or could not start: it will not run again."""
        return self.state == ContainerState.EXITED or self.start_failed

    @property
    def failed_at(self) -> datetime.datetime | None:
        """When it stopped (or failed to start)."""
        return self.finished_at or (self.created_at if self.start_failed else None)

    @property
    def effective_exit_code(self) -> int:
        if self.start_failed:
            return _START_ERROR_EXIT
        return self.exit_code if self.exit_code is not None else 0

    @property
    def succeeded(self) -> bool:
        return self.finished and self.effective_exit_code == 0 and not self.start_failed


def terminated_reason(attempt: Attempt) -> str:
    if attempt.start_failed:
        return "StartError"
    if attempt.oom_killed:
        return "OOMKilled"
    return "Completed" if attempt.effective_exit_code == 0 else "Error"


def _terminated(attempt: Attempt) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": attempt.effective_exit_code,
        "reason": terminated_reason(attempt),
        "containerID": CONTAINER_ID_PREFIX + attempt.id,
    }
    if attempt.start_failed:
        state["message"] = attempt.error
    started = _time(attempt.started_at)
    finished = _time(attempt.finished_at)
    if started:
        state["startedAt"] = started
    if finished:
        state["finishedAt"] = finished
    return state


def _image_id(image_id: str) -> str:
    if not image_id or ":" in image_id:
        return image_id
    return f"sha256:{image_id}"


@dataclass(slots=True)
class ContainerView:
    """One container of the spec as the worker sees it."""

    name: str
    image: str
    current: Attempt | None = None
    previous: Attempt | None = None
    # Set by the worker when the container is not running: (reason, message).
    waiting: tuple[str, str] | None = None
    ready: bool = False
    started: bool = False
    # Restarts already done before the current attempt (the attempt number when known).
    restart_count: int | None = None

    @property
    def has_run(self) -> bool:
        return self.current is not None and (self.current.running or self.current.finished)


def container_status(view: ContainerView) -> dict[str, Any]:
    current = view.current
    status: dict[str, Any] = {
        "name": view.name,
        "image": view.image,
        "imageID": _image_id(current.image_id) if current else "",
        "ready": bool(view.ready and current is not None and current.running),
        "restartCount": view.restart_count
        if view.restart_count is not None
        else (current.attempt if current else 0),
        "started": bool(view.started and current is not None and current.running),
        "state": {},
        "lastState": {},
    }
    if current is not None:
        status["containerID"] = CONTAINER_ID_PREFIX + current.id
    if view.waiting is not None and not (current is not None and current.running):
        reason, message = view.waiting
        waiting: dict[str, Any] = {"reason": reason}
        if message:
            waiting["message"] = message
        status["state"] = {"waiting": waiting}
        if current is not None and current.finished:
            status["lastState"] = {"terminated": _terminated(current)}
        elif view.previous is not None and view.previous.finished:
            status["lastState"] = {"terminated": _terminated(view.previous)}
        return status
    if current is None or not (current.running or current.finished):
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
    elif current.running:
        running: dict[str, Any] = {}
        started = _time(current.started_at)
        if started:
            running["startedAt"] = started
        status["state"] = {"running": running}
    else:
        status["state"] = {"terminated": _terminated(current)}
    if view.previous is not None and view.previous.finished:
        status["lastState"] = {"terminated": _terminated(view.previous)}
    return status


def initialized(init_views: Sequence[ContainerView], app_views: Sequence[ContainerView]) -> bool:
    """Every init container succeeded — or an app container already ran (after the
    agent restarts, init containers are not repeated)."""
    if any(view.current is not None for view in app_views):
        return True
    return all(view.current is not None and view.current.succeeded for view in init_views)


def compute_phase(
    restart_policy: str,
    init_views: Sequence[ContainerView],
    app_views: Sequence[ContainerView],
    previous_phase: str | None = None,
) -> str:
    """Kubernetes' getPhase. A pod that reached Succeeded or Failed stays there."""
    if previous_phase in _TERMINAL:
        return previous_phase
    if not initialized(init_views, app_views):
        if restart_policy == "Never" and any(
            view.current is not None and view.current.finished and not view.current.succeeded
            for view in init_views
        ):
            return "Failed"
        return "Pending"
    running = stopped = succeeded = waiting = 0
    for view in app_views:
        current = view.current
        if current is not None and current.running:
            running += 1
        elif view.waiting is not None and current is not None and current.finished:
            stopped += 1  # waiting to be restarted after it terminated
        elif current is not None and current.finished:
            stopped += 1
            if current.succeeded:
                succeeded += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    previous: dict[str, dict[str, Any]],
    kind: str,
    ok: bool,
    now: str,
    *,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(kind)
    transition = now
    if before is not None and before.get("status") == status and before.get("lastTransitionTime"):
        transition = str(before["lastTransitionTime"])
    condition: dict[str, Any] = {"type": kind, "status": status, "lastTransitionTime": transition}
    if not ok and reason:
        condition["reason"] = reason
    if not ok and message:
        condition["message"] = message
    return condition


def compute_conditions(
    previous_conditions: Sequence[dict[str, Any]] | None,
    phase: str,
    init_views: Sequence[ContainerView],
    app_views: Sequence[ContainerView],
    now: str,
) -> list[dict[str, Any]]:
    """PodScheduled, Initialized, ContainersReady and Ready (other condition types that
    someone else set are kept as they are)."""
    previous = {str(c.get("type")): c for c in previous_conditions or [] if isinstance(c, dict)}
    is_initialized = initialized(init_views, app_views)
    incomplete = [v.name for v in init_views if not (v.current and v.current.succeeded)]
    unready = [v.name for v in app_views if not (v.ready and v.current and v.current.running)]
    terminal = phase in _TERMINAL
    scheduled = previous.get("PodScheduled")
    conditions = [
        scheduled
        if scheduled is not None and scheduled.get("status") == "True"
        else _condition(previous, "PodScheduled", True, now),
        _condition(
            previous,
            "Initialized",
            is_initialized,
            now,
            reason="ContainersNotInitialized",
            message=f"containers with incomplete status: [{' '.join(incomplete)}]",
        ),
    ]
    if terminal:
        reason, message = "PodCompleted", ""
    else:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    ready = not unready and not terminal and is_initialized
    for kind in ("ContainersReady", "Ready"):
        conditions.append(
            _condition(previous, kind, ready, now, reason=reason, message=message or None)
        )
    conditions.extend(c for kind, c in previous.items() if kind not in MANAGED_CONDITIONS)
    return conditions


def build_status(
    previous: dict[str, Any],
    *,
    phase: str,
    conditions: list[dict[str, Any]],
    host_ip: str,
    pod_ip: str | None,
    start_time: str,
    init_statuses: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    published_ports: list[dict[str, Any]],
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """The whole status; fields the agent does not own (qosClass, nominatedNodeName)
    are kept from ``previous``."""
    status: dict[str, Any] = {
        key: value
        for key, value in previous.items()
        if key in ("qosClass", "nominatedNodeName", "resize")
    }
    status["phase"] = phase
    status["conditions"] = conditions
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    status["startTime"] = start_time
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    if published_ports:
        status["publishedPorts"] = published_ports
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status
