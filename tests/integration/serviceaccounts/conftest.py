"""Fixtures for service accounts in pods: a small cluster of real processes.

- ``sa_cluster`` (module): an API server (RBAC, the default authorizer) with a service CIDR
  of its own (a random /24 in 10.100.0.0/14, see tests/integration/services), the
  controllers that give namespaces their ``default`` ServiceAccount and ``kube-root-ca.crt``
  ConfigMap plus the endpoints controller, and a node agent (real Podman) running the service
  proxy and cluster DNS, so pods reach the API server as ``https://kubernetes.default.svc``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.integration.services.conftest import Cluster, running_cluster

CONTROLLERS = "serviceaccount,root-ca-cert-publisher,endpoints"


@pytest.fixture(scope="module")
def sa_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("serviceaccounts"),
        CONTROLLERS,
        # Its own logs/exec port: other agents on this machine may hold the default.
        "--kubelet-port",
        str(free_port()),
    ) as running:
        yield running
