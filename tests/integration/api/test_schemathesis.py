"""A bounded schemathesis run against the served OpenAPI document finds no 5xx."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumo.client import Client
from tests.conftest import REPO, ApiServerFactory, kind_info

MANIFESTS = REPO / "tests" / "data" / "manifests"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_SECONDS = 75
MAX_EXAMPLES = 20


def seed_objects(client: Client) -> None:
    """One object of every kind, named ``fuzz``, in namespace ``fuzz``."""
    client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fuzz"}})
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] == "Namespace":
                continue
            obj: dict[str, Any] = copy.deepcopy(doc)
            obj["metadata"]["name"] = "fuzz"
            kind_info(obj["apiVersion"], obj["kind"])  # every manifest is of a served kind
            client.create_raw(obj, "fuzz")


@pytest.mark.slow
@pytest.mark.schemathesis
def test_fuzzing_the_api_finds_no_server_errors(
    api_server_factory: ApiServerFactory, tmp_path: Path
) -> None:
    server = api_server_factory.start()
    with Client(server.client_config()) as client:
        seed_objects(client)
    env = dict(os.environ)
    env["SCHEMATHESIS_HOOKS"] = "tests.integration.api.schemathesis_hooks"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{server.url}/openapi/v3",
        "--header",
        f"Authorization: Bearer {server.token}",
        "--tls-verify",
        str(server.ca_file),
        "--checks",
        "not_a_server_error",
        "--phases",
        "coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_SECONDS),
        "--request-timeout",
        "10",
        "--seed",
        "20240501",
        "--generation-database",
        "none",
        "--no-color",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS + 60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:] + "\n--- server log ---\n" + server.log_tail(80)
    assert "passed" in output
    assert "Traceback" not in server.log_path.read_text(), server.log_tail(80)
