"""The Job controller against the real API server, with a stand-in kubelet that runs pods to
success or failure (by image name)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from kumo.client import AsyncClient
from kumo.platform.controllers.controller_utils import find_condition, is_pod_active
from kumo.platform.controllers.job import TRACKING_FINALIZER, JobController

from .conftest import Kubelets
from .helpers import JOB, POD, events_for, owned_by, pods, watching_pods

Wait = Any
FAST_BACKOFF = functools.partial(JobController, backoff_seconds=0.1)


def job(name: str, image: str, restart_policy: str = "Never", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": restart_policy,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "main", "image": image}],
                }
            },
        },
    }


def finished(client: AsyncClient, namespace: str, name: str, kind: str) -> Any:
    async def check() -> Any:
        current = await client.get_raw(JOB, name, namespace)
        found = find_condition((current.get("status") or {}).get("conditions"), kind)
        return found is not None and found["status"] == "True" and current

    return check


async def test_completions_with_parallelism(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start(run_for=0.3)
    async with (
        start_controllers("job", job=FAST_BACKOFF),
        watching_pods(async_client, namespace) as seen,
    ):
        created = await async_client.create_raw(
            job("work", "kumo.test/exit-0", completions=4, parallelism=2), namespace
        )
        done = await wait_for(finished(async_client, namespace, "work", "Complete"), within=30)
        await asyncio.sleep(0.2)
    status = done["status"]
    assert status["succeeded"] == 4
    assert status["failed"] == 0
    assert status["active"] == 0
    assert status.get("uncountedTerminatedPods") in (None, {})
    assert status["startTime"] <= status["completionTime"]
    complete = find_condition(status["conditions"], "Complete")
    assert complete is not None and complete["reason"] == "CompletionsReached"
    assert find_condition(status["conditions"], "Failed") is None
    peak = max(sum(1 for p in s.values() if is_pod_active(p)) for s in seen.snapshots)
    assert peak == 2, f"parallelism 2, yet {peak} pods ran at once"
    made = await pods(async_client, namespace)
    assert len(made) == 4
    for pod in made:
        assert owned_by(pod, created)
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["status"]["phase"] == "Succeeded"
        assert TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or [])
    reasons = [e["reason"] for e in await events_for(async_client, namespace, "work")]
    assert reasons.count("SuccessfulCreate") == 4
    assert "Completed" in reasons


async def test_backoff_limit_fails_the_job(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start(run_for=0.1)
    async with start_controllers("job", job=FAST_BACKOFF):
        await async_client.create_raw(
            job("flaky", "kumo.test/exit-1", completions=1, backoffLimit=2), namespace
        )
        done = await wait_for(finished(async_client, namespace, "flaky", "Failed"), within=30)
        await asyncio.sleep(0.5)  # nothing more happens after failure
        after = await async_client.get_raw(JOB, "flaky", namespace)
    status = done["status"]
    failed = find_condition(status["conditions"], "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert status["failed"] == 3  # backoffLimit 2: the third failure ends it
    assert status["succeeded"] == 0
    assert status["active"] == 0
    assert "completionTime" not in status
    assert len(await pods(async_client, namespace)) == 3
    assert after["status"] == status


async def test_active_deadline_stops_running_pods(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("job", job=FAST_BACKOFF):
        await async_client.create_raw(
            job(
                "slow",
                "kumo.test/never-ready",
                parallelism=2,
                completions=4,
                activeDeadlineSeconds=2,
            ),
            namespace,
        )

        async def running() -> Any:
            current = await async_client.get_raw(JOB, "slow", namespace)
            return (current.get("status") or {}).get("active") == 2

        await wait_for(running)
        done = await wait_for(finished(async_client, namespace, "slow", "Failed"), within=15)

        async def no_pods_left() -> bool:
            return not [p for p in await pods(async_client, namespace) if is_pod_active(p)]

        await wait_for(no_pods_left)
    status = done["status"]
    failed = find_condition(status["conditions"], "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    assert status["active"] == 0
    assert status["failed"] == 2  # the two pods it stopped
    assert status["succeeded"] == 0


async def test_a_finished_pod_is_counted_once_even_if_deleted(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start(run_for=0.5)
    async with start_controllers("job", job=FAST_BACKOFF):
        await async_client.create_raw(
            job("count", "kumo.test/exit-0", completions=3, parallelism=1), namespace
        )

        async def first_success() -> Any:
            done = [
                p
                for p in await pods(async_client, namespace)
                if (p.get("status") or {}).get("phase") == "Succeeded"
                and TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or [])
            ]
            return done and done[0]

        first = await wait_for(first_success)
        await async_client.delete_raw(POD, first["metadata"]["name"], namespace)
        done = await wait_for(finished(async_client, namespace, "count", "Complete"), within=30)
    assert done["status"]["succeeded"] == 3
    remaining = await pods(async_client, namespace)
    assert len(remaining) == 2  # three ran; the deleted one still counted
    reasons = [e["reason"] for e in await events_for(async_client, namespace, "count")]
    assert reasons.count("SuccessfulCreate") == 3
