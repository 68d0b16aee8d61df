"""The access commands against the real server: kumo auth can-i / whoami, kumo create token,
kumo admin token create|list|revoke, and the global --as."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kumo.cli.main import cli
from kumo.client import KubeConfig
from tests.conftest import ApiServerProcess, unique_name
from tests.integration.auth.helpers import admin_create, grant, mint_token, user


def _config_for(server: ApiServerProcess, token: str, path: Path, namespace: str) -> Path:
    config = KubeConfig.load(path)
    config.set_cluster("test", server.url, server.ca_file.read_bytes())
    config.set_user("someone", token)
    config.set_context("test", "test", "someone", namespace)
    config.use_context("test")
    config.save()
    return path


def _kumo(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"KUMOCONFIG": str(config)})


@pytest.fixture
def alice(api_server: ApiServerProcess, namespace: str, tmp_path: Path) -> tuple[str, Path]:
    name = unique_name("alice")
    _, token = mint_token(api_server, name, ["devs"])
    grant(
        api_server,
        namespace,
        user(name),
        [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update"]},
        ],
        "dev",
    )
    return name, _config_for(api_server, token, tmp_path / "alice.config", namespace)


def test_can_i_answers_yes_and_no_with_exit_codes(alice: tuple[str, Path], namespace: str) -> None:
    _, config = alice
    yes = _kumo(config, "auth", "can-i", "list", "pods")
    assert (yes.exit_code, yes.output.strip()) == (0, "yes"), yes.output
    no = _kumo(config, "auth", "can-i", "delete", "pods")
    assert (no.exit_code, no.output.strip()) == (1, "no")
    assert _kumo(config, "auth", "can-i", "list", "pods", "-n", "default").exit_code == 1
    assert _kumo(config, "auth", "can-i", "get", "pods/log", "web").exit_code == 0
    assert _kumo(config, "auth", "can-i", "get", "pods", "--subresource", "exec").exit_code == 1
    assert _kumo(config, "auth", "can-i", "update", "deployments.apps/scale").exit_code == 0
    assert _kumo(config, "auth", "can-i", "update", "deploy/scale", "-n", namespace).exit_code == 0
    assert _kumo(config, "auth", "can-i", "update", "deployments").exit_code == 1
    assert _kumo(config, "auth", "can-i", "list", "pods", "-A").exit_code == 1
    assert _kumo(config, "auth", "can-i", "get", "/version").exit_code == 0
    assert _kumo(config, "auth", "can-i", "get", "/metrics").exit_code == 1
    quiet = _kumo(config, "auth", "can-i", "list", "pods", "-q")
    assert (quiet.exit_code, quiet.output) == (0, "")


def test_can_i_as_another_user(api_server: ApiServerProcess, alice: tuple[str, Path]) -> None:
    name, alice_config = alice
    admin = api_server.kubeconfig_path
    namespace = KubeConfig.load(alice_config).resolve().namespace
    args = ("auth", "can-i", "list", "pods", "-n", namespace)
    assert _kumo(admin, *args, "--as", name).exit_code == 0
    assert _kumo(admin, *args, "--as", unique_name("stranger")).exit_code == 1
    # the global flag works for every command
    assert _kumo(admin, "--as", name, *args).exit_code == 0
    assert (
        _kumo(admin, "--as", name, "auth", "can-i", "create", "pods", "-n", namespace).exit_code
        == 1
    )
    listing = _kumo(admin, "--as", name, "get", "pods", "-n", "default")
    assert listing.exit_code == 1
    assert "Forbidden" in listing.output
    # alice cannot impersonate anyone
    denied = _kumo(alice_config, *args, "--as", "admin")
    assert denied.exit_code == 1
    assert "impersonate" in denied.output


def test_whoami(alice: tuple[str, Path], api_server: ApiServerProcess) -> None:
    name, config = alice
    result = _kumo(config, "auth", "whoami")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ATTRIBUTE", "VALUE"]
    assert lines[1].split() == ["Username", name]
    assert lines[2].split()[0] == "UID"
    assert lines[3].split(None, 1) == ["Groups", "[devs system:authenticated]"]
    admin = _kumo(api_server.kubeconfig_path, "auth", "whoami", "-o", "json")
    assert '"username": "admin"' in admin.output


def test_create_token_for_a_service_account(
    api_server: ApiServerProcess, namespace: str, tmp_path: Path
) -> None:
    admin_create(
        api_server,
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ci"}},
    )
    result = _kumo(
        api_server.kubeconfig_path, "create", "token", "ci", "-n", namespace, "--duration", "1h"
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.count(".") == 2
    as_ci = _config_for(api_server, token, tmp_path / "ci.config", namespace)
    whoami = _kumo(as_ci, "auth", "whoami")
    assert f"system:serviceaccount:{namespace}:ci" in whoami.output
    too_short = _kumo(
        api_server.kubeconfig_path, "create", "token", "ci", "-n", namespace, "--duration", "5m"
    )
    assert too_short.exit_code == 1
    assert "10 minutes" in too_short.output
    other = _kumo(
        api_server.kubeconfig_path, "create", "token", "ci", "-n", namespace, "--audience", "vault"
    )
    assert other.exit_code == 0
    with api_server.http(token=other.output.strip()) as http:
        assert http.get("/api").status_code == 401  # not meant for the API server


def test_admin_token_lifecycle(api_server: ApiServerProcess, tmp_path: Path) -> None:
    admin = api_server.kubeconfig_path
    name = unique_name("contractor")
    created = _kumo(admin, "admin", "token", "create", name, "--group", "devs", "--ttl", "24h")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("kumo_")
    token_id = token[len("kumo_") :].split(".")[0]
    config = _config_for(api_server, token, tmp_path / "contractor.config", "default")
    assert name in _kumo(config, "auth", "whoami").output
    listing = _kumo(admin, "admin", "token", "list")
    assert listing.exit_code == 0
    row = next(line for line in listing.output.splitlines() if line.startswith(token_id))
    assert name in row and "devs" in row and "active" in row
    assert token.split(".", 1)[1] not in listing.output
    revoked = _kumo(admin, "admin", "token", "revoke", token_id)
    assert revoked.exit_code == 0
    assert f"usertoken/{token_id} revoked" in revoked.output
    after = _kumo(config, "auth", "whoami")
    assert after.exit_code == 1
    assert "Unauthorized" in after.output
    assert "revoked" in next(
        line
        for line in _kumo(admin, "admin", "token", "list").output.splitlines()
        if line.startswith(token_id)
    )
    # a user without rights cannot use the admin commands
    assert _kumo(config, "admin", "token", "list").exit_code == 1
