"""CronJobs end to end: ``kumo controllers`` (cronjob, job, garbage collector; as the
controller-manager identity) makes a Job at the next minute, a real ``kumo agent`` runs its
pod on Podman, and the CronJob's status follows; a suspended CronJob makes nothing.

(The schedule is ``* * * * *``: the test waits for the next minute, up to a minute.)
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kumo.client import Client
from kumo.model.registry import by_kind
from tests.conftest import ApiServerProcess
from tests.integration.agent.conftest import BUSYBOX, AgentProcess
from tests.integration.components import module_agent, module_controllers, run_kumo, wait_until
from tests.integration.services.conftest import Controllers

pytestmark = [pytest.mark.podman, pytest.mark.slow]

Obj = dict[str, Any]
CRONJOB = by_kind("batch/v1", "CronJob")
JOB = by_kind("batch/v1", "Job")
EVENT = by_kind("v1", "Event")
assert CRONJOB is not None and JOB is not None and EVENT is not None


@pytest.fixture(scope="module")
def agent(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    yield from module_agent(api_server, tmp_path_factory, "cron")


@pytest.fixture(scope="module")
def controllers(
    api_server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controllers]:
    yield from module_controllers(
        api_server, tmp_path_factory, "cron", "cronjob,job,garbagecollector"
    )


def cronjob(name: str, node: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "nodeName": node,
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "hello",
                                    "image": BUSYBOX,
                                    "command": ["sh", "-c", "echo hello from kumo cron"],
                                }
                            ],
                        }
                    },
                },
            },
            **spec,
        },
    }


def owned_jobs(client: Client, namespace: str, uid: str) -> list[Obj]:
    items, _ = client.list_all_raw(JOB, namespace)  # type: ignore[arg-type]
    return [
        j
        for j in items
        if any(r.get("uid") == uid for r in j["metadata"].get("ownerReferences") or [])
    ]


def reasons(client: Client, namespace: str, name: str) -> list[str]:
    items, _ = client.list_all_raw(EVENT, namespace)  # type: ignore[arg-type]
    return [e["reason"] for e in items if (e.get("involvedObject") or {}).get("name") == name]


def test_a_job_runs_at_the_next_minute_and_suspend_stops_runs(
    api_server: ApiServerProcess,
    agent: AgentProcess,
    controllers: Controllers,
    client: Client,
    namespace: str,
) -> None:
    hello = client.create_raw(cronjob("hello", agent.name), namespace)
    paused = client.create_raw(cronjob("paused", agent.name, suspend=True), namespace)
    uid = hello["metadata"]["uid"]

    jobs = wait_until(
        lambda: owned_jobs(client, namespace, uid),
        75,
        f"a Job from the CronJob\n{controllers.log_tail()}",
    )
    job = jobs[0]
    scheduled = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert scheduled.endswith(":00Z"), scheduled  # on the minute
    minutes = calendar.timegm(time.strptime(scheduled, "%Y-%m-%dT%H:%M:%SZ")) // 60
    assert job["metadata"]["name"] == f"hello-{minutes}"
    assert job["metadata"]["labels"]["app"] == "hello"

    # the agent runs the pod; the Job completes; the CronJob's status follows
    def finished() -> Obj | None:
        found = client.get_raw(CRONJOB, "hello", namespace)  # type: ignore[arg-type]
        current = found.get("status") or {}
        return found if current.get("lastSuccessfulTime") and not current.get("active") else None

    done = wait_until(finished, 60, f"the run finished\n{agent.log_tail(20)}")
    assert done["status"]["lastScheduleTime"] == scheduled
    completed = client.get_raw(JOB, job["metadata"]["name"], namespace)  # type: ignore[arg-type]
    assert any(
        c["type"] == "Complete" and c["status"] == "True" for c in completed["status"]["conditions"]
    )
    wait_until(
        lambda: {"SuccessfulCreate", "SawCompletedJob"} <= set(reasons(client, namespace, "hello")),
        15,
        "events",
    )

    # a minute boundary has passed since the suspended one was made: it ran nothing
    assert owned_jobs(client, namespace, paused["metadata"]["uid"]) == []
    listed = run_kumo(api_server, "get", "cronjobs", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    table = listed.stdout.splitlines()
    assert table[0].split() == [
        "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE",
    ], table  # fmt: skip
    rows = {line.split()[0]: line for line in table[1:]}
    assert re.match(r"hello\s+\* \* \* \* \*\s+<none>\s+False\s+0\s+\d+s\s", rows["hello"])
    assert re.match(r"paused\s+\* \* \* \* \*\s+<none>\s+True\s+0\s+<none>\s", rows["paused"])

    # kumo create job --from: the suspended CronJob's Job, run by hand, now
    made = run_kumo(
        api_server, "create", "job", "by-hand", "--from", "cronjob/paused", "-n", namespace
    )
    assert made.returncode == 0 and made.stdout.strip() == "job.batch/by-hand created", made
    manual = client.get_raw(JOB, "by-hand", namespace)  # type: ignore[arg-type]
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert manual["metadata"]["ownerReferences"][0]["uid"] == paused["metadata"]["uid"]
    wait_until(
        lambda: any(
            c["type"] == "Complete"
            for c in (client.get_raw(JOB, "by-hand", namespace).get("status") or {}).get(  # type: ignore[arg-type]
                "conditions"
            )
            or []
        ),
        60,
        "the manual run",
    )
    wrong = run_kumo(api_server, "create", "job", "x", "-n", namespace)
    assert wrong.returncode != 0 and "either --from=cronjob/NAME or --image=IMAGE" in wrong.stderr
