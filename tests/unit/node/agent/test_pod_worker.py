"""The pod worker on a fake runtime: ordering, restarts, back-off, images, config
errors, deletion, adoption, and writing status only when it changed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from kumo.model.core import PodStatus
from kumo.node.pod_worker import go_duration
from kumo.node.runtime import ContainerState, ExecResult
from kumo.node.runtime.fake import FakeBehavior, FakeHost
from tests.unit.node.agent.conftest import Harness, condition_of, make_pod, status_of


def state(status: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = status_of(status, name, init=init).get("state") or {}
    return found


async def test_init_containers_run_one_at_a_time_then_the_app(harness: Harness) -> None:
    runtime = harness.runtime
    pod = make_pod(
        [{"name": "app", "image": "busybox"}],
        initContainers=[{"name": "i1", "image": "busybox"}, {"name": "i2", "image": "busybox"}],
    )
    harness.run(pod)
    await harness.until(lambda s: "running" in state(s, "i1", init=True))
    assert {c.container_name for c in await runtime.list_containers()} == {"i1"}
    status = harness.api.last
    assert status["phase"] == "Pending"
    assert state(status, "i2", init=True) == {"waiting": {"reason": "PodInitializing"}}
    assert state(status, "app") == {"waiting": {"reason": "PodInitializing"}}
    assert condition_of(status, "Initialized")["status"] == "False"

    [i1] = await runtime.list_containers({"kumo.dev/container-name": "i1"})
    await runtime.exit_container(i1.id, 0)
    await harness.until(lambda s: "running" in state(s, "i2", init=True))
    [i2] = await runtime.list_containers({"kumo.dev/container-name": "i2"})
    await runtime.exit_container(i2.id, 0)
    status = await harness.until(lambda s: s.get("phase") == "Running")
    assert condition_of(status, "Initialized")["status"] == "True"
    assert condition_of(status, "Ready")["status"] == "True"
    assert state(status, "i2", init=True)["terminated"]["reason"] == "Completed"
    assert status["hostIP"] == "127.0.0.1" and status["podIP"].startswith("10.88.")
    events = harness.api.reasons()
    assert events.count("Started") == 3 and events.count("Created") == 3


async def test_a_failing_init_container_is_retried_or_fails_the_pod(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.runtime.behaviors["init"] = FakeBehavior(exit_code=1)
    try:
        harness.run(
            make_pod(
                [{"name": "app", "image": "busybox"}],
                name="never",
                restartPolicy="Never",
                initContainers=[{"name": "init", "image": "busybox"}],
            )
        )
        status = await harness.until(lambda s: s.get("phase") == "Failed")
        assert state(status, "init", init=True)["terminated"]["exitCode"] == 1
        assert state(status, "app") == {"waiting": {"reason": "PodInitializing"}}
    finally:
        await harness.close()


async def test_crash_loop_back_off_grows_and_shows_kubernetes_message(harness: Harness) -> None:
    harness.runtime.behaviors["c"] = FakeBehavior(exit_code=2)
    pod = make_pod([{"name": "c", "image": "busybox"}])
    harness.run(pod)
    status = await harness.until(lambda s: status_of(s, "c").get("restartCount", 0) >= 3, within=10)
    entry = status_of(status, "c")
    uid = pod.metadata.uid
    waiting = harness.api.statuses
    messages = {
        status_of(s, "c")["state"].get("waiting", {}).get("message")
        for s in waiting
        if "waiting" in status_of(s, "c").get("state", {})
    }
    assert f"back-off 300ms restarting failed container=c pod=p_ns({uid})" in messages
    assert f"back-off 600ms restarting failed container=c pod=p_ns({uid})" in messages
    assert entry["lastState"]["terminated"]["exitCode"] == 2
    assert entry["lastState"]["terminated"]["reason"] == "Error"
    assert status["phase"] == "Running"
    # Old attempts are cleaned up: only the current and the previous one stay.
    assert len(await harness.runtime.list_containers()) <= 2
    assert "BackOff" in harness.api.reasons()


async def test_restart_policies(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.runtime.behaviors["ok"] = FakeBehavior(exit_code=0)
    harness.runtime.behaviors["bad"] = FakeBehavior(exit_code=3)
    try:
        harness.run(
            make_pod([{"name": "ok", "image": "busybox"}], name="a", restartPolicy="OnFailure")
        )
        status = await harness.until(lambda s: s.get("phase") == "Succeeded")
        assert status_of(status, "ok")["restartCount"] == 0
        assert condition_of(status, "Ready")["reason"] == "PodCompleted"
        harness.api.statuses.clear()
        harness.run(
            make_pod([{"name": "bad", "image": "busybox"}], name="b", restartPolicy="Never")
        )
        status = await harness.until(lambda s: s.get("phase") == "Failed")
        assert status_of(status, "bad")["restartCount"] == 0
        await asyncio.sleep(0.5)
        assert len(await harness.runtime.list_containers({"kumo.dev/container-name": "bad"})) == 1
    finally:
        await harness.close()


async def test_oom_killed_is_reported(harness: Harness) -> None:
    harness.runtime.behaviors["hog"] = FakeBehavior(oom_on_start=True)
    harness.run(make_pod([{"name": "hog", "image": "busybox"}], restartPolicy="Never"))
    status = await harness.until(lambda s: s.get("phase") == "Failed")
    assert state(status, "hog")["terminated"]["reason"] == "OOMKilled"
    assert state(status, "hog")["terminated"]["exitCode"] == 137


async def test_missing_image_err_image_pull_then_image_pull_back_off(harness: Harness) -> None:
    harness.run(make_pod([{"name": "c", "image": "registry.example/app:1"}]))
    first = await harness.until(
        lambda s: state(s, "c").get("waiting", {}).get("reason") == "ErrImagePull"
    )
    assert "failed to pull image" in state(first, "c")["waiting"]["message"]
    then = await harness.until(
        lambda s: state(s, "c").get("waiting", {}).get("reason") == "ImagePullBackOff"
    )
    assert (
        state(then, "c")["waiting"]["message"] == 'Back-off pulling image "registry.example/app:1"'
    )
    assert then["phase"] == "Pending"
    # The image shows up in the registry: the next pull after the back-off works.
    harness.runtime.host.registry.add("registry.example/app:1")
    await harness.until(lambda s: "running" in state(s, "c"), within=5)
    assert {"Pulling", "Failed", "BackOff", "Pulled"} <= set(harness.api.reasons())


async def test_never_pull_policy(harness: Harness) -> None:
    harness.run(
        make_pod([{"name": "c", "image": "registry.example/app:1", "imagePullPolicy": "Never"}])
    )
    status = await harness.until(
        lambda s: state(s, "c").get("waiting", {}).get("reason") == "ErrImageNeverPull"
    )
    assert state(status, "c")["waiting"]["message"] == (
        'Container image "registry.example/app:1" is not present with pull policy of Never'
    )


async def test_present_images_are_used_even_with_always(harness: Harness) -> None:
    harness.run(make_pod([{"name": "c", "image": "busybox", "imagePullPolicy": "Always"}]))
    await harness.until(lambda s: "running" in state(s, "c"))
    assert "Pulling" not in harness.api.reasons()


async def test_config_errors_and_recovery(harness: Harness) -> None:
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}
                ],
            }
        ]
    )
    harness.run(pod)
    status = await harness.until(
        lambda s: state(s, "c").get("waiting", {}).get("reason") == "CreateContainerConfigError"
    )
    assert state(status, "c")["waiting"]["message"] == 'configmap "cfg" not found'
    harness.api.add_config_map("cfg", {"k": "v"})
    await harness.until(lambda s: "running" in state(s, "c"), within=8)
    [container] = await harness.runtime.list_containers()
    assert harness.runtime.host.containers[container.id].config.env["X"] == "v"


async def test_run_as_non_root_refuses_root_images(harness: Harness) -> None:
    harness.run(
        make_pod([{"name": "c", "image": "busybox", "securityContext": {"runAsNonRoot": True}}])
    )
    status = await harness.until(
        lambda s: state(s, "c").get("waiting", {}).get("reason") == "CreateContainerConfigError"
    )
    assert "image will run as root" in state(status, "c")["waiting"]["message"]
    assert await harness.runtime.list_containers() == []


async def test_liveness_failure_restarts_the_container(harness: Harness) -> None:
    def handler(status: object, command: tuple[str, ...], stdin: bytes) -> ExecResult:
        return ExecResult(1, b"unhealthy", b"")

    harness.runtime.exec_handler = handler
    harness.run(
        make_pod(
            [
                {
                    "name": "c",
                    "image": "busybox",
                    "livenessProbe": {
                        "exec": {"command": ["check"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                }
            ]
        )
    )
    status = await harness.until(lambda s: status_of(s, "c").get("restartCount", 0) >= 1, within=8)
    assert status_of(status, "c")["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM
    assert ("Warning", "Unhealthy", "Liveness probe failed: unhealthy", "spec.containers{c}") in (
        harness.api.events
    )
    assert "Container c failed liveness probe, will be restarted" in [
        message for _, _, message, _ in harness.api.events
    ]


async def test_graceful_deletion_runs_pre_stop_then_stops_and_deletes(harness: Harness) -> None:
    runtime = harness.runtime
    pod = make_pod(
        [
            {
                "name": "c",
                "image": "busybox",
                "lifecycle": {"preStop": {"exec": {"command": ["drain"]}}},
            }
        ],
        terminationGracePeriodSeconds=5,
    )
    worker = harness.run(pod)
    await harness.until(lambda s: "running" in state(s, "c"))
    [container] = await runtime.list_containers()
    deleting = pod.model_copy(deep=True)
    deleting.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    deleting.metadata.deletion_grace_period_seconds = 5
    deleting.metadata.resource_version = "99"
    began = time.monotonic()
    worker.update(deleting)
    await asyncio.wait_for(worker.finished.wait(), 5)
    assert time.monotonic() - began < 2  # it stopped on SIGTERM: no waiting out the grace
    assert (container.id, ("drain",)) in runtime.exec_calls
    assert runtime.signals[container.id] == ["SIGTERM"]
    assert await runtime.list_containers() == [] and await runtime.list_sandboxes() == []
    assert harness.api.deleted == [pod.metadata.uid]
    assert harness.finished == [pod.metadata.uid]
    assert not (harness.options.pods_dir / (pod.metadata.uid or "")).exists()


async def test_a_stubborn_container_is_killed_after_the_grace_period(harness: Harness) -> None:
    harness.runtime.behaviors["c"] = FakeBehavior(ignores_stop_signal=True)
    pod = make_pod([{"name": "c", "image": "busybox"}], terminationGracePeriodSeconds=1)
    worker = harness.run(pod)
    await harness.until(lambda s: "running" in state(s, "c"))
    [container] = await harness.runtime.list_containers()
    deleting = pod.model_copy(deep=True)
    deleting.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    deleting.metadata.deletion_grace_period_seconds = 1
    deleting.metadata.resource_version = "999"
    began = time.monotonic()
    worker.update(deleting)
    await asyncio.wait_for(worker.finished.wait(), 5)
    assert 0.9 <= time.monotonic() - began < 3
    assert harness.runtime.signals[container.id] == ["SIGTERM", "SIGKILL"]


async def test_a_vanished_pod_is_torn_down_without_deleting(harness: Harness) -> None:
    worker = harness.run(make_pod([{"name": "c", "image": "busybox"}]))
    await harness.until(lambda s: "running" in state(s, "c"))
    worker.mark_deleted()
    await asyncio.wait_for(worker.finished.wait(), 5)
    assert await harness.runtime.list_sandboxes() == []
    assert harness.api.deleted == []


async def test_a_new_agent_adopts_running_containers(tmp_path: Path) -> None:
    host = FakeHost()
    first = Harness(tmp_path, host=host)
    first.runtime.behaviors["c"] = FakeBehavior()
    pod = make_pod(
        [{"name": "c", "image": "busybox", "readinessProbe": {"exec": {"command": ["ok"]}}}]
    )
    # One crash first, so the restart count is not zero.
    worker = first.run(pod)
    await first.until(lambda s: condition_of(s, "Ready").get("status") == "True")
    [container] = await first.runtime.list_containers()
    await first.runtime.exit_container(container.id, 1)
    worker.wake()
    status = await first.until(
        lambda s: (
            status_of(s, "c").get("restartCount") == 1
            and condition_of(s, "Ready").get("status") == "True"
        ),
        within=5,
    )
    await first.close()  # the agent stops; containers keep running
    ids = sorted(c.id for c in await first.runtime.list_containers())

    second = Harness(tmp_path, host=host)
    adopted = pod.model_copy(deep=True)
    adopted.status = PodStatus.model_validate(status)
    try:
        second.run(adopted)
        await asyncio.sleep(0.8)  # several sync periods
        assert sorted(c.id for c in await second.runtime.list_containers()) == ids
        assert not any(r in ("Created", "Started", "Killing") for r in second.api.reasons())
        # Nothing changed, so nothing was written: same containers, same counts, still ready.
        assert second.api.statuses == []
        running = [
            c for c in await second.runtime.list_containers() if c.state == ContainerState.RUNNING
        ]
        assert len(running) == 1
    finally:
        await second.close()


async def test_status_is_written_only_when_it_changes(harness: Harness) -> None:
    harness.run(make_pod([{"name": "c", "image": "busybox"}]))
    await harness.until(lambda s: "running" in state(s, "c"))
    writes = len(harness.api.statuses)
    await asyncio.sleep(0.6)  # six sync periods
    assert len(harness.api.statuses) == writes


async def test_published_ports(harness: Harness) -> None:
    harness.run(
        make_pod(
            [
                {
                    "name": "web",
                    "image": "busybox",
                    "ports": [
                        {"containerPort": 80, "name": "http"},
                        {"containerPort": 53, "protocol": "UDP", "hostPort": 5353},
                    ],
                }
            ]
        )
    )
    status = await harness.until(lambda s: "running" in state(s, "web"))
    ports = {p["containerPort"]: p for p in status["publishedPorts"]}
    assert 40000 <= ports[80]["hostPort"] <= 40100 and ports[80]["name"] == "http"
    assert ports[80]["hostIP"] == "127.0.0.1" and ports[80]["protocol"] == "TCP"
    assert ports[53] == {
        "containerName": "web",
        "containerPort": 53,
        "protocol": "UDP",
        "hostIP": "127.0.0.1",
        "hostPort": 5353,
    }


async def test_active_deadline_fails_the_pod(harness: Harness) -> None:
    harness.run(make_pod([{"name": "c", "image": "busybox"}], activeDeadlineSeconds=1))
    status = await harness.until(lambda s: s.get("phase") == "Failed", within=5)
    assert status["reason"] == "DeadlineExceeded"
    assert "DeadlineExceeded" in harness.api.reasons()
    [container] = await harness.runtime.list_containers()
    assert container.state == ContainerState.EXITED


def test_go_durations() -> None:
    assert [go_duration(s) for s in (0.3, 1.5, 10, 80, 300, 3725)] == [
        "300ms",
        "1.5s",
        "10s",
        "1m20s",
        "5m0s",
        "1h2m5s",
    ]
