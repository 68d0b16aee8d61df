"""kumo's own components act as least-privilege users through the real server, never as
system:masters: the scheduler as system:kube-scheduler, the controllers as
system:kube-controller-manager, the gateway as system:kumo:gateway, a node agent as
system:node:<name> in system:nodes. Tokens come from ``kumo admin token create
--component``; each identity does what its component does and gets a 403 Status for the
rest; NodeRestriction keeps a node to its own Node, Lease and pods. ``kumo up``'s cached
component tokens are re-issued when an older kumo left system:masters tokens behind.

The tests use a private API server: they write leader-election Leases, Nodes and RBAC
objects that must not reach the shared one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from kumo.cli.main import cli
from kumo.cli.server_commands import component_client
from kumo.client import Client
from kumo.client.config import load
from kumo.platform.api.server import ApiServer, ServerOptions
from tests.conftest import ApiServerProcess, free_port, unique_name
from tests.integration.auth.helpers import RBAC, admin_create, binding, user

AUTHN = "/apis/authentication.k8s.io/v1"
AUTHZ = "/apis/authorization.k8s.io/v1"
LEASES = "/apis/coordination.k8s.io/v1/namespaces"
MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    process = ApiServerProcess(tmp_path_factory.mktemp("components") / "data")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def mint(server: ApiServerProcess, component: str, node: str | None = None) -> str:
    """A token made as an administrator would: ``kumo admin token create --component``."""
    args = ["admin", "token", "create", "--component", component]
    if node:
        args += ["--node-name", node]
    result = CliRunner().invoke(cli, args, env={"KUMOCONFIG": str(server.kubeconfig_path)})
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("kumo_"), result.output
    return token


@contextlib.contextmanager
def acting(server: ApiServerProcess, token: str) -> Iterator[httpx.Client]:
    with server.http(token=token) as http:
        yield http


def namespace_of(server: ApiServerProcess) -> str:
    name = unique_name("comp")
    admin_create(
        server,
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    return name


def pod(name: str, node: str = "", account: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {
        # no scheduler picks these up
        "schedulerName": "nobody",
        "containers": [{"name": "c", "image": "docker.io/library/busybox:latest"}],
    }
    if node:
        spec["nodeName"] = node
    if account:
        spec["serviceAccountName"] = account
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def forbidden(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 403, response.text
    body = response.json()
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Forbidden", 403)
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


def whoami(http: httpx.Client) -> dict[str, Any]:
    response = http.post(
        f"{AUTHN}/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert response.status_code == 201, response.text
    info: dict[str, Any] = response.json()["status"]["userInfo"]
    return info


def crb(name: str, role: str, who: str) -> dict[str, Any]:
    return binding(name, "ClusterRole", role, [user(who)])


def test_the_scheduler_identity(server: ApiServerProcess) -> None:
    ns = namespace_of(server)
    admin_create(server, f"/api/v1/namespaces/{ns}/pods", pod("waiting"))
    admin_create(server, f"/api/v1/namespaces/{ns}/pods", pod("unschedulable"))
    with acting(server, mint(server, "scheduler")) as http:
        me = whoami(http)
        assert me["username"] == "system:kube-scheduler"
        assert me["groups"] == ["system:authenticated"]
        for path in ("/api/v1/nodes", "/api/v1/pods", "/api/v1/namespaces"):
            assert http.get(path).status_code == 200, path
        watch = http.get("/api/v1/pods", params={"watch": "1", "timeoutSeconds": "1"})
        assert watch.status_code == 200
        bound = http.post(
            f"/api/v1/namespaces/{ns}/pods/waiting/binding",
            json={
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": "waiting"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "somewhere"},
            },
        )
        assert bound.status_code == 201, bound.text
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        status = http.patch(
            f"/api/v1/namespaces/{ns}/pods/unschedulable/status",
            json={"status": {"conditions": [condition]}},
            headers=STRATEGIC,
        )
        assert status.status_code == 200, status.text
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "unschedulable.1"},
            "involvedObject": {"kind": "Pod", "namespace": ns, "name": "unschedulable"},
            "reason": "FailedScheduling",
            "message": "0/0 nodes are available",
            "type": "Warning",
        }
        assert http.post(f"/api/v1/namespaces/{ns}/events", json=event).status_code == 201
        patched = http.patch(
            f"/api/v1/namespaces/{ns}/events/unschedulable.1", json={"count": 2}, headers=MERGE
        )
        assert patched.status_code == 200, patched.text
        # its leader-election Lease: create, read, renew; not anybody else's
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "kumo-scheduler"},
            "spec": {"holderIdentity": "me"},
        }
        created = http.post(f"{LEASES}/kube-system/leases", json=lease)
        assert created.status_code == 201, created.text
        renewed = http.put(f"{LEASES}/kube-system/leases/kumo-scheduler", json=created.json())
        assert renewed.status_code == 200, renewed.text
        forbidden(http.get(f"{LEASES}/kube-system/leases/kube-controller-manager"))
        # nothing else
        forbidden(http.get(f"/api/v1/namespaces/{ns}/secrets/anything"), "system:kube-scheduler")
        forbidden(http.get("/api/v1/secrets"))
        forbidden(http.post(f"/api/v1/namespaces/{ns}/pods", json=pod("mine")))
        forbidden(http.delete(f"/api/v1/namespaces/{ns}/pods/waiting"))
        forbidden(http.post(f"{RBAC}/clusterrolebindings", json=crb("s", "cluster-admin", "x")))


def test_the_controller_manager_identity(server: ApiServerProcess) -> None:
    ns = namespace_of(server)
    owner = admin_create(
        server,
        f"/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
    )
    victim = unique_name("victim")
    admin_create(server, f"{RBAC}/clusterrolebindings", crb(victim, "cluster-admin", "nobody"))
    with acting(server, mint(server, "controllers")) as http:
        me = whoami(http)
        assert me["username"] == "system:kube-controller-manager"
        assert me["groups"] == ["system:authenticated"]
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod("x")["spec"]},
            },
        }
        assert http.post(f"/apis/apps/v1/namespaces/{ns}/replicasets", json=rs).status_code == 201
        assert http.post(f"/api/v1/namespaces/{ns}/pods", json=pod("web-1")).status_code == 201
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner"}
        ref["uid"] = owner["metadata"]["uid"]
        adopted = http.patch(
            f"/api/v1/namespaces/{ns}/pods/web-1",
            json={"metadata": {"ownerReferences": [ref]}},
            headers=MERGE,
        )
        assert adopted.status_code == 200, adopted.text
        for path, body in [
            (f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "builder"}}),
            (f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "settings"}}),
            (f"/api/v1/namespaces/{ns}/endpoints", {"metadata": {"name": "web"}}),
        ]:
            kind = {"serviceaccounts": "ServiceAccount", "configmaps": "ConfigMap"}.get(
                path.rsplit("/", 1)[1], "Endpoints"
            )
            made = http.post(path, json={"apiVersion": "v1", "kind": kind, **body})
            assert made.status_code == 201, made.text
        assert http.get("/api/v1/secrets").status_code == 200  # informers of every kind
        assert http.delete(f"/api/v1/namespaces/{ns}/pods/web-1").status_code == 200
        # the garbage collector may change ownerReferences of RBAC objects, nothing else
        path = f"{RBAC}/clusterrolebindings/{victim}"
        gc = http.patch(
            path, json={"metadata": {"ownerReferences": [{**ref, "namespace": ns}]}}, headers=MERGE
        )
        assert gc.status_code == 200, gc.text
        escalate = http.patch(
            path,
            json={"subjects": [user("nobody"), user("system:kube-controller-manager")]},
            headers=MERGE,
        )
        forbidden(escalate, "not currently held")
        forbidden(http.post(f"{RBAC}/clusterrolebindings", json=crb("c", "cluster-admin", "x")))
        forbidden(
            http.post(
                f"{RBAC}/clusterroles",
                json={
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": unique_name("r")},
                    "rules": [],
                },
            )
        )
        forbidden(
            http.post(
                f"/api/v1/namespaces/{ns}/serviceaccounts/default/token",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"},
            )
        )
        forbidden(
            http.get("/api/v1/namespaces", headers={"Impersonate-User": "admin"}), "impersonate"
        )
        assert http.delete(path).status_code == 200  # deleting grants nothing
    with server.http() as admin:
        subjects = admin.get(f"{RBAC}/clusterrolebindings/cluster-admin").json()["subjects"]
    assert all(s["name"] != "system:kube-controller-manager" for s in subjects)


def test_the_gateway_identity(server: ApiServerProcess) -> None:
    ns = namespace_of(server)
    admin_create(
        server,
        f"/apis/kumo.dev/v1/namespaces/{ns}/functions",
        {
            "apiVersion": "kumo.dev/v1",
            "kind": "Function",
            "metadata": {"name": "hello"},
            "spec": {"image": "docker.io/library/python:3.11"},
        },
    )
    scraper = mint(server, "scheduler")  # any token: the gateway asks about it
    with acting(server, mint(server, "gateway")) as http:
        assert whoami(http)["username"] == "system:kumo:gateway"
        for path in ("/api/v1/services", "/api/v1/endpoints"):
            assert http.get(path).status_code == 200
            assert http.get(path, params={"watch": "1", "timeoutSeconds": "1"}).status_code == 200
        annotation = {"kumo.dev/activation-requested-at": "2025-01-01T00:00:00.000000Z"}
        activated = http.patch(
            f"/apis/kumo.dev/v1/namespaces/{ns}/functions/hello",
            json={"metadata": {"annotations": annotation}},
            headers=MERGE,
        )
        assert activated.status_code == 200, activated.text
        # GatewayRestriction: nothing else of a Function may change
        for change in (
            {"spec": {"image": "docker.io/library/busybox:latest"}},
            {"metadata": {"labels": {"team": "gateway"}}},
            {"metadata": {"annotations": {"other": "x"}}},
        ):
            refused = http.patch(
                f"/apis/kumo.dev/v1/namespaces/{ns}/functions/hello", json=change, headers=MERGE
            )
            forbidden(refused, "may only set the annotation kumo.dev/activation-requested-at")
        review = http.post(
            f"{AUTHN}/tokenreviews",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": scraper},
            },
        )
        assert review.status_code == 201, review.text
        assert review.json()["status"]["user"]["username"] == "system:kube-scheduler"
        access = http.post(
            f"{AUTHZ}/subjectaccessreviews",
            json={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": "system:kube-scheduler",
                    "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
                },
            },
        )
        assert access.status_code == 201, access.text
        assert access.json()["status"]["allowed"] is False
        forbidden(http.get(f"/api/v1/namespaces/{ns}/secrets/x"), "system:kumo:gateway")
        forbidden(http.get("/api/v1/pods"))
        forbidden(
            http.patch(f"/api/v1/namespaces/{ns}/services/x", json={"metadata": {}}, headers=MERGE)
        )
        forbidden(http.delete(f"/apis/kumo.dev/v1/namespaces/{ns}/functions/hello"))
        forbidden(http.post(f"{RBAC}/clusterrolebindings", json=crb("g", "cluster-admin", "x")))


def node_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}


def node_lease(name: str, namespace: str = "kube-node-lease") -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40},
    }


def test_a_node_writes_its_own_node_lease_and_pods_only(server: ApiServerProcess) -> None:
    ns = namespace_of(server)
    mine, theirs = unique_name("node-a"), unique_name("node-b")
    admin_create(
        server,
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}},
    )
    admin_create(server, f"/api/v1/namespaces/{ns}/pods", pod("here", mine, "app"))
    admin_create(server, f"/api/v1/namespaces/{ns}/pods", pod("there", theirs, "app"))
    admin_create(
        server,
        f"/api/v1/namespaces/{ns}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}},
    )
    with acting(server, mint(server, "node", theirs)) as other:
        assert other.post("/api/v1/nodes", json=node_object(theirs)).status_code == 201
        created = other.post(f"{LEASES}/kube-node-lease/leases", json=node_lease(theirs))
        assert created.status_code == 201, created.text
    with acting(server, mint(server, "node", mine)) as http:
        me = whoami(http)
        assert me["username"] == f"system:node:{mine}"
        assert sorted(me["groups"]) == ["system:authenticated", "system:nodes"]
        # its own Node and Lease
        assert http.post("/api/v1/nodes", json=node_object(mine)).status_code == 201
        labels = http.patch(
            f"/api/v1/nodes/{mine}", json={"metadata": {"labels": {"zone": "a"}}}, headers=MERGE
        )
        assert labels.status_code == 200, labels.text
        ready = {"conditions": [{"type": "Ready", "status": "True"}]}
        status = http.patch(f"/api/v1/nodes/{mine}/status", json={"status": ready}, headers=MERGE)
        assert status.status_code == 200, status.text
        lease = http.post(f"{LEASES}/kube-node-lease/leases", json=node_lease(mine))
        assert lease.status_code == 201, lease.text
        renewed = http.put(f"{LEASES}/kube-node-lease/leases/{mine}", json=lease.json())
        assert renewed.status_code == 200, renewed.text
        # not another node's
        node_says = f'node "{mine}"'
        forbidden(
            http.patch(f"/api/v1/nodes/{theirs}/status", json={"status": ready}, headers=MERGE),
            node_says,
            f'not allowed to modify node "{theirs}"',
        )
        forbidden(
            http.patch(
                f"/api/v1/nodes/{theirs}", json={"spec": {"unschedulable": True}}, headers=MERGE
            ),
            node_says,
        )
        forbidden(http.post("/api/v1/nodes", json=node_object(unique_name("fake"))), node_says)
        theirs_lease = http.get(f"{LEASES}/kube-node-lease/leases/{theirs}").json()
        forbidden(
            http.put(f"{LEASES}/kube-node-lease/leases/{theirs}", json=theirs_lease), node_says
        )
        forbidden(
            http.post(f"{LEASES}/kube-node-lease/leases", json=node_lease(unique_name("x"))),
            node_says,
        )
        forbidden(http.post(f"{LEASES}/{ns}/leases", json=node_lease(mine, ns)), "kube-node-lease")
        forbidden(
            http.patch(
                f"/api/v1/nodes/{mine}",
                json={"metadata": {"labels": {"node-restriction.kubernetes.io/gpu": "yes"}}},
                headers=MERGE,
            ),
            "node-restriction.kubernetes.io/gpu",
        )
        # pods: the status of its own, deletion of its own, tokens bound to its own
        here = http.get(f"/api/v1/namespaces/{ns}/pods/here").json()
        running = {**here, "status": {"phase": "Running"}}
        wrote = http.put(f"/api/v1/namespaces/{ns}/pods/here/status", json=running)
        assert wrote.status_code == 200, wrote.text
        there = http.get(f"/api/v1/namespaces/{ns}/pods/there").json()
        forbidden(
            http.put(
                f"/api/v1/namespaces/{ns}/pods/there/status",
                json={**there, "status": {"phase": "Failed"}},
            ),
            node_says,
            "spec.nodeName set to itself",
        )
        forbidden(http.delete(f"/api/v1/namespaces/{ns}/pods/there"), node_says)
        forbidden(http.post(f"/api/v1/namespaces/{ns}/pods", json=pod("new", mine)))
        token_path = f"/api/v1/namespaces/{ns}/serviceaccounts/app/token"

        def token_for(name: str | None) -> httpx.Response:
            spec: dict[str, Any] = {}
            if name:
                spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": name}
            return http.post(
                token_path,
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": spec,
                },
            )

        assert token_for("here").status_code == 201
        forbidden(token_for("there"), node_says, "different node")
        forbidden(token_for(None), node_says, "bound to a pod")
        # secrets: only those its pods use (the Node authorizer: test_node_authorizer.py)
        forbidden(
            http.get(f"/api/v1/namespaces/{ns}/secrets/s"),
            f"no relationship found between node '{mine}'",
        )
        forbidden(http.get("/api/v1/secrets"))
        forbidden(http.post(f"{RBAC}/clusterrolebindings", json=crb("n", "cluster-admin", "x")))
        gone = http.delete(f"/api/v1/namespaces/{ns}/pods/here", params={"gracePeriodSeconds": "0"})
        assert gone.status_code == 200, gone.text
    # a member of system:nodes that does not say which node it is may write none of these
    with server.http() as admin:
        response = admin.post(
            "/apis/kumo.dev/v1/usertokens",
            json={
                "apiVersion": "kumo.dev/v1",
                "kind": "UserToken",
                "spec": {"user": "rogue", "groups": ["system:nodes"]},
            },
        )
        assert response.status_code == 201, response.text
    with acting(server, response.json()["status"]["token"]) as rogue:
        forbidden(rogue.post("/api/v1/nodes", json=node_object("rogue")), "could not determine")


def test_the_command_refuses_incomplete_component_requests(server: ApiServerProcess) -> None:
    env = {"KUMOCONFIG": str(server.kubeconfig_path)}
    for args, message in [
        (["--component", "node"], "--node-name"),
        (["--component", "gateway", "--node-name", "n"], "--node-name"),
        (["alice", "--component", "gateway"], "not both"),
        ([], "USER or --component"),
    ]:
        result = CliRunner().invoke(cli, ["admin", "token", "create", *args], env=env)
        assert result.exit_code == 2, result.output
        assert message in result.output


def test_a_written_client_config_acts_as_the_component(
    server: ApiServerProcess, tmp_path: Path
) -> None:
    """``--write-config FILE``: what ``KUMOCONFIG=FILE kumo controllers`` runs with."""
    path = tmp_path / "controllers.config"
    result = CliRunner().invoke(
        cli,
        ["admin", "token", "create", "--component", "controllers", "--write-config", str(path)],
        env={"KUMOCONFIG": str(server.kubeconfig_path)},
    )
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    config = load(path)
    assert config.token == result.stdout.strip()
    with Client(config) as client:
        me = client.request(
            "POST",
            f"{AUTHN}/selfsubjectreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        ).json()["status"]["userInfo"]
    assert me["username"] == "system:kube-controller-manager"


async def test_kumo_up_replaces_cached_masters_tokens(tmp_path: Path) -> None:
    """An older ``kumo up`` kept system:masters tokens under <data-dir>/credentials: the next
    start revokes them and issues each component its own identity; a matching token is kept;
    a token of someone else found there is replaced but left valid."""
    options = ServerOptions(data_dir=tmp_path / "data", port=free_port())
    async with ApiServer(options) as api:
        credentials = options.data_dir / "credentials"
        credentials.mkdir(parents=True)
        old = await api.issue_token("system:kumo:scheduler", ["system:masters"])
        (credentials / "scheduler.token").write_text(old)
        clients = []
        try:
            scheduler = await component_client(api, "scheduler")
            clients.append(scheduler)
            me = (
                await scheduler.request(
                    "POST",
                    f"{AUTHN}/selfsubjectreviews",
                    body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                )
            ).json()["status"]["userInfo"]
            assert (me["username"], me["groups"]) == (
                "system:kube-scheduler",
                ["system:authenticated"],
            )
            assert not await api.authenticates(old)  # revoked, not merely forgotten
            cached = (credentials / "scheduler.token").read_text()
            assert cached != old
            again = await component_client(api, "scheduler")
            clients.append(again)
            assert again.config.token == cached  # the right identity is reused
            agent = await component_client(api, "agent", node_name="n1")
            clients.append(agent)
            first = (credentials / "agent.token").read_text()
            assert (await api.tokens.authenticate(first)).name == "system:node:n1"  # type: ignore[union-attr]
            renamed = await component_client(api, "agent", node_name="n2")
            clients.append(renamed)
            assert not await api.authenticates(first)
            second = (credentials / "agent.token").read_text()
            user = await api.tokens.authenticate(second)  # type: ignore[union-attr]
            assert user is not None
            assert (user.name, set(user.groups)) == (
                "system:node:n2",
                {"system:nodes", "system:authenticated"},
            )
            # a token kumo up did not issue for the component (here the admin's) is only
            # replaced, not revoked
            admin = await api.issue_admin_token()
            (credentials / "gateway.token").write_text(admin)
            gateway = await component_client(api, "gateway")
            clients.append(gateway)
            assert gateway.config.token != admin
            assert await api.authenticates(admin)
        finally:
            for client in clients:
                await client.close()
