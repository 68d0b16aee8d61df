"""The workload verbs through the real ``kumo`` command (KUMOCONFIG points at the test
server), with the controllers and a stand-in kubelet running in the test process."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from kumo.cli.workload_commands import event_time
from kumo.client import AsyncClient
from kumo.platform.controllers import deployment_util as util
from kumo.platform.controllers.controller_utils import controller_ref, is_pod_active
from tests.conftest import ApiServerProcess, _kumo_command

from .conftest import Kubelets
from .helpers import DEPLOYMENT, NODE, RS, bare_pod, deployment, pods, replicaset

Wait = Any
LABELS = {"app": "web"}
ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


async def kumo(server: ApiServerProcess, *args: str, within: float = 60) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["KUMOCONFIG"] = str(server.kubeconfig_path)
    process = await asyncio.create_subprocess_exec(
        *_kumo_command(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def set_image(client: AsyncClient, namespace: str, image: str) -> None:
    await client.patch_raw(
        DEPLOYMENT,
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}},
        namespace,
        patch_type="application/strategic-merge-patch+json",
    )


async def sets_by_revision(client: AsyncClient, namespace: str) -> dict[int, dict[str, Any]]:
    owner = await client.get_raw(DEPLOYMENT, "web", namespace)
    items, _ = await client.list_all_raw(RS, namespace)
    return {
        util.revision(rs): rs
        for rs in items
        if (controller_ref(rs) or {}).get("uid") == owner["metadata"]["uid"]
    }


def image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


async def test_rollout_status_history_and_undo(
    api_server: ApiServerProcess,
    async_client: AsyncClient,
    *,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        await async_client.create_raw(
            deployment("web", 3, LABELS, "kumo.test/web:1", strategy=ROLLING, minReadySeconds=1),
            namespace,
        )
        code, out, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "40s"
        )
        assert code == 0, err
        assert out.strip().splitlines()[-1] == 'deployment "web" successfully rolled out'

        await set_image(async_client, namespace, "kumo.test/web:2")
        code, out, err = await kumo(
            api_server, "rollout", "status", "deploy/web", "-n", namespace, "--timeout", "40s"
        )
        assert code == 0, err
        lines = out.strip().splitlines()
        assert lines[-1] == 'deployment "web" successfully rolled out'
        progress = [
            line
            for line in lines
            if line.startswith('Waiting for deployment "web" rollout to finish: ')
        ]
        assert progress, out
        assert any(
            line.endswith("updated replicas are available...")
            or "new replicas have been updated" in line
            or "old replicas are pending termination" in line
            for line in progress
        )

        code, out, err = await kumo(
            api_server, "rollout", "history", "deployment/web", "-n", namespace
        )
        assert code == 0, err
        rows = [line.split() for line in out.strip().splitlines()]
        assert rows[0] == ["deployment.apps/web"]
        assert rows[1] == ["REVISION", "CHANGE-CAUSE"]
        assert rows[2:] == [["1", "<none>"], ["2", "<none>"]]

        code, out, err = await kumo(
            api_server, "rollout", "history", "deployment/web", "-n", namespace, "--revision", "1"
        )
        assert code == 0, err
        assert "deployment.apps/web with revision #1" in out
        assert "kumo.test/web:1" in out

        before = await sets_by_revision(async_client, namespace)
        first_hash = before[1]["metadata"]["labels"][util.POD_TEMPLATE_HASH]
        code, out, err = await kumo(
            api_server, "rollout", "undo", "deployment/web", "-n", namespace
        )
        assert code == 0, err
        assert out.strip() == "deployment.apps/web rolled back"
        code, out, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "40s"
        )
        assert code == 0, err
        after = await sets_by_revision(async_client, namespace)
        assert sorted(after) == [2, 3]
        # The old ReplicaSet (same template hash as revision 1) became revision 3.
        assert after[3]["metadata"]["labels"][util.POD_TEMPLATE_HASH] == first_hash
        assert after[3]["metadata"]["uid"] == before[1]["metadata"]["uid"]
        assert after[3]["metadata"]["annotations"][util.REVISION_HISTORY] == "1"
        assert after[3]["spec"]["replicas"] == 3 and after[2]["spec"]["replicas"] == 0
        current = await async_client.get_raw(DEPLOYMENT, "web", namespace)
        assert image(current) == "kumo.test/web:1"
        assert current["metadata"]["annotations"][util.REVISION] == "3"
        active = [p for p in await pods(async_client, namespace) if is_pod_active(p)]
        assert {p["metadata"]["labels"][util.POD_TEMPLATE_HASH] for p in active} == {first_hash}

        code, out, err = await kumo(
            api_server, "rollout", "undo", "deployment/web", "-n", namespace, "--to-revision", "2"
        )
        assert code == 0, err
        code, _, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "40s"
        )
        assert code == 0, err
        assert image(await async_client.get_raw(DEPLOYMENT, "web", namespace)) == "kumo.test/web:2"

        code, out, err = await kumo(
            api_server, "rollout", "undo", "deployment/web", "-n", namespace, "--to-revision", "9"
        )
        assert code == 1
        assert "unable to find specified revision 9 in history" in err

        code, out, err = await kumo(
            api_server, "events", "--for", "deployment/web", "-n", namespace
        )
        assert code == 0, err
        assert "ScalingReplicaSet" in out
        assert out.splitlines()[0].split() == [
            "LAST",
            "SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "MESSAGE",
        ]
        lines = out.strip().splitlines()[1:]
        assert lines and all("deployment/web" in line for line in lines)

        # `kumo get events` lists oldest first too.
        code, out, err = await kumo(api_server, "get", "events", "-n", namespace, "-o", "json")
        assert code == 0, err
        listed = json.loads(out)["items"]
        assert len(listed) > 10
        assert [event_time(e) for e in listed] == sorted(event_time(e) for e in listed)


async def test_pause_resume_and_restart(
    api_server: ApiServerProcess,
    async_client: AsyncClient,
    *,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        await async_client.create_raw(deployment("web", 2, LABELS, strategy=ROLLING), namespace)
        code, _, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "30s"
        )
        assert code == 0, err

        code, out, err = await kumo(
            api_server, "rollout", "pause", "deployment/web", "-n", namespace
        )
        assert (code, out.strip()) == (0, "deployment.apps/web paused"), err
        code, _, err = await kumo(api_server, "rollout", "pause", "deployment/web", "-n", namespace)
        assert code == 1 and 'deployments.apps "web" is already paused' in err
        code, _, err = await kumo(
            api_server, "rollout", "restart", "deployment/web", "-n", namespace
        )
        assert code == 1 and "can't restart paused deployment" in err

        await set_image(async_client, namespace, "kumo.test/web:2")
        await asyncio.sleep(1.0)
        assert sorted(await sets_by_revision(async_client, namespace)) == [1]

        code, out, err = await kumo(
            api_server, "rollout", "resume", "deployment/web", "-n", namespace
        )
        assert (code, out.strip()) == (0, "deployment.apps/web resumed"), err
        code, _, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "30s"
        )
        assert code == 0, err
        assert sorted(await sets_by_revision(async_client, namespace)) == [1, 2]

        code, out, err = await kumo(
            api_server, "rollout", "restart", "deployment/web", "-n", namespace
        )
        assert (code, out.strip()) == (0, "deployment.apps/web restarted"), err
        code, _, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "30s"
        )
        assert code == 0, err
        sets = await sets_by_revision(async_client, namespace)
        assert sorted(sets) == [1, 2, 3]
        notes = sets[3]["spec"]["template"]["metadata"]["annotations"]
        assert util.RESTARTED_AT in notes
        assert image(sets[3]) == "kumo.test/web:2"


async def test_rollout_status_fails_on_progress_deadline(
    api_server: ApiServerProcess,
    async_client: AsyncClient,
    *,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        await async_client.create_raw(
            deployment("web", 2, LABELS, "kumo.test/never-ready", progressDeadlineSeconds=2),
            namespace,
        )
        code, out, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "30s"
        )
        assert code == 1
        assert 'error: deployment "web" exceeded its progress deadline' in err
        assert "Waiting for deployment" in out


async def test_scale_through_the_scale_subresource(
    api_server: ApiServerProcess,
    async_client: AsyncClient,
    *,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        await async_client.create_raw(deployment("web", 1, LABELS), namespace)
        await async_client.create_raw(replicaset("side", 1, {"app": "side"}), namespace)
        code, out, err = await kumo(
            api_server, "scale", "deployment/web", "--replicas", "3", "-n", namespace
        )
        assert (code, out.strip()) == (0, "deployment.apps/web scaled"), err
        code, _, err = await kumo(
            api_server, "rollout", "status", "deployment/web", "-n", namespace, "--timeout", "30s"
        )
        assert code == 0, err
        assert (
            len([p for p in await pods(async_client, namespace, "app=web") if is_pod_active(p)])
            == 3
        )
        code, out, err = await kumo(
            api_server, "rollout", "status", "deploy/web", "--watch=false", "-n", namespace
        )
        assert (code, out.strip()) == (0, 'deployment "web" successfully rolled out'), err

        code, out, err = await kumo(
            api_server, "scale", "rs", "side", "--replicas", "2", "-n", namespace
        )
        assert (code, out.strip()) == (0, "replicaset.apps/side scaled"), err

        async def two() -> bool:
            return (
                len(
                    [p for p in await pods(async_client, namespace, "app=side") if is_pod_active(p)]
                )
                == 2
            )

        await wait_for(two)
        code, _, err = await kumo(
            api_server,
            "scale",
            "rs/side",
            "--replicas",
            "4",
            "--current-replicas",
            "5",
            "-n",
            namespace,
        )
        assert code == 1 and "Expected replicas to be 5, was 2" in err
        code, _, err = await kumo(
            api_server, "scale", "configmap/x", "--replicas", "1", "-n", namespace
        )
        assert code == 1 and "cannot be scaled" in err


async def test_cordon_uncordon_and_drain(
    api_server: ApiServerProcess,
    async_client: AsyncClient,
    *,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    first = await kubelets.start(node=f"{namespace}-a", finish_delay=0.2)
    async with start_controllers("replicaset"):
        await async_client.create_raw(replicaset("web", 2, LABELS), namespace)
        await async_client.create_raw(bare_pod("lonely", {"app": "lonely"}), namespace)

        async def on(node: str, selector: str, count: int) -> bool:
            found = [
                p
                for p in await pods(async_client, namespace, selector)
                if is_pod_active(p) and p["spec"].get("nodeName") == node
            ]
            return len(found) == count

        await wait_for(lambda: on(first.node, "app=web", 2))
        await wait_for(lambda: on(first.node, "app=lonely", 1))

        code, out, err = await kumo(api_server, "cordon", first.node)
        assert (code, out.strip()) == (0, f"node/{first.node} cordoned"), err
        assert (await async_client.get_raw(NODE, first.node))["spec"]["unschedulable"] is True
        code, out, _ = await kumo(api_server, "cordon", first.node)
        assert out.strip() == f"node/{first.node} already cordoned"
        code, out, err = await kumo(api_server, "uncordon", first.node)
        assert (code, out.strip()) == (0, f"node/{first.node} uncordoned"), err
        assert not (await async_client.get_raw(NODE, first.node))["spec"].get("unschedulable")

        # A pod no controller would bring back stops the drain unless --force.
        code, out, err = await kumo(api_server, "drain", first.node, "--ignore-daemonsets")
        assert code == 1
        assert (
            f"cannot delete Pods that declare no controller (use --force to override): {namespace}/lonely"
            in err
        )
        assert await on(first.node, "app=web", 2)

        second = await kubelets.start(node=f"{namespace}-b")
        code, out, err = await kumo(
            api_server,
            "drain",
            first.node,
            "--ignore-daemonsets",
            "--force",
            "--grace-period",
            "1",
            "--timeout",
            "30s",
        )
        assert code == 0, err
        lines = out.strip().splitlines()
        assert lines[0] == f"node/{first.node} already cordoned"
        assert lines[-1] == f"node/{first.node} drained"
        assert sum(1 for line in lines if line.startswith(f"evicting pod {namespace}/")) == 3
        assert sum(1 for line in lines if line.endswith(" evicted")) == 3
        assert "deleting Pods that declare no controller" in err
        assert not [
            p
            for p in await pods(async_client, namespace)
            if p["spec"].get("nodeName") == first.node
        ]
        # The ReplicaSet's pods run on the other node now; the lone pod is gone for good.
        await wait_for(lambda: on(second.node, "app=web", 2))
        assert not await pods(async_client, namespace, "app=lonely")
