"""The kubeconfig-style client configuration file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from kumo.client import ConfigError, KubeConfig
from kumo.client.config import load

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_round_trip_with_contexts(tmp_path: Path) -> None:
    path = tmp_path / "kumo" / "config"
    config = KubeConfig.load(path)
    config.set_cluster("home", "https://127.0.0.1:7443/", CA)
    config.set_user("home-admin", "kumo_abc.def")
    config.set_context("home", "home", "home-admin", "team-a")
    config.set_cluster("lab", "https://lab:7443", None)
    config.set_user("lab-admin", "kumo_lab.secret")
    config.set_context("lab", "lab", "lab-admin")
    config.use_context("home")
    config.save()

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    reloaded = KubeConfig.load(path)
    assert reloaded.context_names() == ["home", "lab"]
    home = reloaded.resolve()
    assert home.server == "https://127.0.0.1:7443"
    assert home.token == "kumo_abc.def"
    assert home.ca_data == CA
    assert home.namespace == "team-a"
    lab = reloaded.resolve("lab")
    assert lab.namespace == "default" and lab.ca_data is None
    reloaded.set_namespace("team-b")
    assert reloaded.resolve().namespace == "team-b"
    raw = path.read_text()
    assert base64.b64encode(CA).decode() in raw


def test_helpful_errors(tmp_path: Path) -> None:
    empty = KubeConfig.load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="kumo up"):
        empty.resolve()
    with pytest.raises(ConfigError, match="no context named"):
        empty.use_context("nope")
    with pytest.raises(ConfigError, match="kumo up"):
        load(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.write_text("clusters: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        KubeConfig.load(broken)
    dangling = KubeConfig.load(tmp_path / "dangling")
    dangling.set_context("x", "no-such-cluster", "nobody")
    with pytest.raises(ConfigError, match="does not define"):
        dangling.resolve("x")


def test_token_file_and_ca_file_references(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("kumo_t.s\n")
    (tmp_path / "ca.crt").write_bytes(CA)
    path = tmp_path / "config"
    path.write_text(
        f"""
apiVersion: v1
kind: Config
current-context: c
clusters:
- name: k
  cluster:
    server: https://example:1
    certificate-authority: {tmp_path / "ca.crt"}
users:
- name: u
  user:
    tokenFile: {tmp_path / "token"}
contexts:
- name: c
  context: {{cluster: k, user: u}}
"""
    )
    resolved = load(path)
    assert resolved.token == "kumo_t.s"
    assert resolved.ca_data == CA
