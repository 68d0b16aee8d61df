"""Phase, conditions and container statuses from runtime facts (Kubernetes' rules)."""

from __future__ import annotations

import datetime

import pytest

from kumo.model.base import to_wire
from kumo.model.core import PodStatus
from kumo.node.pod_status import (
    Attempt,
    ContainerView,
    build_status,
    compute_conditions,
    compute_phase,
    container_status,
    initialized,
    terminated_reason,
)
from kumo.node.runtime import ContainerState

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)


def running(attempt: int = 0, cid: str = "c1") -> Attempt:
    return Attempt(cid, attempt, ContainerState.RUNNING, "abc", T0, None, None)


def exited(code: int, attempt: int = 0, cid: str = "c0", oom: bool = False) -> Attempt:
    return Attempt(
        cid,
        attempt,
        ContainerState.EXITED,
        "abc",
        T0,
        T0 + datetime.timedelta(seconds=5),
        code,
        oom,
    )


def start_failed(attempt: int = 0) -> Attempt:
    return Attempt(
        "cx",
        attempt,
        ContainerState.CREATED,
        "abc",
        None,
        None,
        None,
        error="exec: not found",
        created_at=T0,
    )


def view(name: str, current: Attempt | None = None, **kw: object) -> ContainerView:
    return ContainerView(name, "busybox", current, **kw)  # type: ignore[arg-type]


def test_terminated_reasons() -> None:
    assert terminated_reason(exited(0)) == "Completed"
    assert terminated_reason(exited(1)) == "Error"
    assert terminated_reason(exited(137, oom=True)) == "OOMKilled"
    failed = start_failed()
    assert terminated_reason(failed) == "StartError"
    assert failed.finished and failed.effective_exit_code == 128 and not failed.succeeded
    assert failed.failed_at == T0


@pytest.mark.parametrize(
    ("policy", "apps", "phase"),
    [
        ("Always", [view("a")], "Pending"),
        ("Always", [view("a", running())], "Running"),
        ("Always", [view("a", running()), view("b")], "Pending"),
        ("Always", [view("a", exited(0))], "Running"),  # will be restarted
        ("OnFailure", [view("a", exited(0))], "Succeeded"),
        ("OnFailure", [view("a", exited(1))], "Running"),
        ("Never", [view("a", exited(1))], "Failed"),
        ("Never", [view("a", exited(0)), view("b", exited(0))], "Succeeded"),
        ("Never", [view("a", exited(0)), view("b", exited(3))], "Failed"),
        ("Never", [view("a", exited(3)), view("b", running())], "Running"),
        ("Always", [view("a", exited(1), waiting=("CrashLoopBackOff", "x"))], "Running"),
        ("Never", [view("a", start_failed())], "Failed"),
    ],
)
def test_phase(policy: str, apps: list[ContainerView], phase: str) -> None:
    assert compute_phase(policy, [], apps) == phase


def test_phase_with_init_containers() -> None:
    app = [view("app")]
    assert compute_phase("Always", [view("i1", running())], app) == "Pending"
    assert compute_phase("Always", [view("i1", exited(1))], app) == "Pending"  # retried
    assert compute_phase("Never", [view("i1", exited(1))], app) == "Failed"
    done = [view("i1", exited(0)), view("i2", exited(0))]
    assert initialized(done, app)
    assert compute_phase("Always", done, [view("app", running())]) == "Running"
    # After an agent restart whose init containers were cleaned up, a running app
    # container means the pod was initialized.
    assert initialized([view("i1")], [view("app", running())])


def test_terminal_phases_stick() -> None:
    assert compute_phase("Always", [], [view("a", running())], "Succeeded") == "Succeeded"
    assert compute_phase("Always", [], [view("a")], "Failed") == "Failed"


def test_conditions_keep_transition_times_while_unchanged() -> None:
    apps = [view("a", running(), ready=True), view("b", running(), ready=False)]
    first = compute_conditions(None, "Running", [], apps, "2024-05-01T12:00:00Z")
    by_type = {c["type"]: c for c in first}
    assert [c["type"] for c in first] == ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
    assert by_type["Ready"] == {
        "type": "Ready",
        "status": "False",
        "lastTransitionTime": "2024-05-01T12:00:00Z",
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [b]",
    }
    assert by_type["Initialized"]["status"] == "True"
    apps[1].ready = True
    second = compute_conditions(
        [*first, {"type": "DisruptionTarget", "status": "True"}],
        "Running",
        [],
        apps,
        "2024-05-01T12:00:09Z",
    )
    by_type = {c["type"]: c for c in second}
    assert by_type["Ready"] == {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "2024-05-01T12:00:09Z",
    }
    assert by_type["Initialized"]["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert by_type["DisruptionTarget"] == {"type": "DisruptionTarget", "status": "True"}


def test_conditions_of_init_and_terminal_pods() -> None:
    init = [view("i1", exited(0)), view("i2", running())]
    conditions = {
        c["type"]: c
        for c in compute_conditions(None, "Pending", init, [view("app")], "2024-05-01T12:00:00Z")
    }
    assert conditions["Initialized"]["reason"] == "ContainersNotInitialized"
    assert conditions["Initialized"]["message"] == "containers with incomplete status: [i2]"
    done = {
        c["type"]: c for c in compute_conditions(None, "Succeeded", [], [view("a", exited(0))], "t")
    }
    assert done["Ready"]["status"] == "False" and done["Ready"]["reason"] == "PodCompleted"


def test_container_status_running_with_previous_attempt() -> None:
    status = container_status(
        view("a", running(2, "new"), previous=exited(1, 1, "old"), ready=True, started=True)
    )
    assert status == {
        "name": "a",
        "image": "busybox",
        "imageID": "sha256:abc",
        "ready": True,
        "restartCount": 2,
        "started": True,
        "containerID": "podman://new",
        "state": {"running": {"startedAt": "2024-05-01T12:00:00Z"}},
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "containerID": "podman://old",
                "startedAt": "2024-05-01T12:00:00Z",
                "finishedAt": "2024-05-01T12:00:05Z",
            }
        },
    }


def test_container_status_crash_loop_shows_the_last_termination() -> None:
    status = container_status(
        view("a", exited(137, 3, oom=True), waiting=("CrashLoopBackOff", "back-off 40s ..."))
    )
    assert status["state"] == {
        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s ..."}
    }
    assert status["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["restartCount"] == 3
    assert status["ready"] is False and status["started"] is False


def test_container_status_waiting_and_start_errors() -> None:
    assert container_status(view("a"))["state"] == {"waiting": {"reason": "ContainerCreating"}}
    pulled = container_status(view("a", waiting=("ErrImagePull", "no registry")))
    assert pulled["state"] == {"waiting": {"reason": "ErrImagePull", "message": "no registry"}}
    assert pulled["imageID"] == "" and "containerID" not in pulled
    failed = container_status(view("a", start_failed()))
    assert failed["state"]["terminated"]["reason"] == "StartError"
    assert failed["state"]["terminated"]["message"] == "exec: not found"
    assert failed["state"]["terminated"]["exitCode"] == 128
    # restart count carried over when the container is being re-created
    assert container_status(view("a", restart_count=4))["restartCount"] == 4


def test_build_status_round_trips_through_the_model() -> None:
    apps = [view("a", running(), ready=True, started=True)]
    status = build_status(
        {"qosClass": "BestEffort", "reason": "old"},
        phase="Running",
        conditions=compute_conditions(None, "Running", [], apps, "2024-05-01T12:00:00Z"),
        host_ip="127.0.0.1",
        pod_ip="10.88.0.5",
        start_time="2024-05-01T12:00:00Z",
        init_statuses=[],
        statuses=[container_status(v) for v in apps],
        published_ports=[
            {
                "containerName": "a",
                "containerPort": 80,
                "protocol": "TCP",
                "hostIP": "127.0.0.1",
                "hostPort": 30080,
            }
        ],
    )
    assert status["qosClass"] == "BestEffort" and "reason" not in status
    assert status["podIPs"] == [{"ip": "10.88.0.5"}]
    assert "initContainerStatuses" not in status
    assert to_wire(PodStatus.model_validate(status)) == status
