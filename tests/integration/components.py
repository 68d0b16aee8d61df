"""What the Podman integration tests of controllers share: a real ``kumo agent`` and
``kumo controllers`` (as the controller-manager identity) for a test module, the ``kumo`` CLI
against the test server, and polling.

Fixtures are written in each module as one line over these:

    @pytest.fixture(scope="module")
    def agent(api_server, tmp_path_factory):
        yield from module_agent(api_server, tmp_path_factory, "hpa", "--stats-interval", "1")
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import KUMO, REPO, ApiServerProcess
from tests.integration.agent.conftest import AgentFactory, AgentProcess
from tests.integration.services.conftest import Controllers


def module_agent(
    api_server: ApiServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
    prefix: str,
    *flags: str,
) -> Iterator[AgentProcess]:
    """One agent (``kumo agent FLAGS``) for the module; stopped and its Node removed after."""
    factory = AgentFactory(api_server, tmp_path_factory.mktemp(f"{prefix}-agents"))
    try:
        yield factory.start(*flags)
    finally:
        factory.close()


def module_controllers(
    api_server: ApiServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
    prefix: str,
    names: str,
    *extra: str,
) -> Iterator[Controllers]:
    """``kumo controllers --controllers NAMES EXTRA`` for the module."""
    log = tmp_path_factory.mktemp(f"{prefix}-controllers") / "controllers.log"
    running = Controllers(api_server, log, names, *extra)
    try:
        yield running
    finally:
        running.stop()


def wait_until(check: Callable[[], Any], within: float, what: str) -> Any:
    """``check()``'s first truthy answer, polled for ``within`` seconds; else fail saying
    ``what`` and the last answer."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached within {within:.0f}s; last: {last!r}")


def run_kumo(
    api_server: ApiServerProcess, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``kumo ARGS`` as the test server's admin; never raises on a non-zero exit."""
    return subprocess.run(
        [str(KUMO), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, KUMOCONFIG=str(api_server.kubeconfig_path)),
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
