"""Inside a pod the client finds the API server and its credentials the Kubernetes way."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumo.client import config


def test_in_cluster_config_from_mounted_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_bytes(b"PEM")
    (tmp_path / "namespace").write_text("team")
    monkeypatch.setattr(config, "SERVICE_ACCOUNT_DIR", tmp_path)
    monkeypatch.delenv("KUMO_SERVICE_HOST_URL", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert config.in_cluster() is None  # no server to talk to
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    found = config.in_cluster()
    assert found is not None
    assert found.server == "https://10.96.0.1:443"
    assert (found.token, found.ca_data, found.namespace) == ("sa-token", b"PEM", "team")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert (config.in_cluster() or found).server == "https://[fd00::1]:443"
    monkeypatch.setenv("KUMO_SERVICE_HOST_URL", "https://api.example:7443")
    assert (config.in_cluster() or found).server == "https://api.example:7443"
    (tmp_path / "token").unlink()
    assert config.in_cluster() is None  # automount off: no token, no in-cluster config
