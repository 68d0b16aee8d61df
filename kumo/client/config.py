"""The client configuration: a kubeconfig-shaped YAML file (``~/.kumo/config``, mode 0600).

Resolution order: an explicit path, ``$KUMOCONFIG``, ``~/.kumo/config``; inside a kumo pod,
the mounted service-account token. The file holds clusters, users and contexts exactly like
a kubeconfig, so ``kumo config use-context`` switches between kumo installations.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kumo.dev/serviceaccount")


class ConfigError(Exception):
    """The configuration is missing or unusable; the message says what to do."""


@dataclass(slots=True)
class ClientConfig:
    server: str
    token: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    namespace: str = "default"
    context: str = ""
    user: str = ""
    # Act as another user (Impersonate-User / Impersonate-Group; needs ``impersonate``).
    impersonate: str | None = None
    impersonate_groups: list[str] = field(default_factory=list)

    def auth_headers(self) -> list[tuple[str, str]]:
        """Authorization and impersonation headers for every request."""
        out: list[tuple[str, str]] = []
        if self.token:
            out.append(("Authorization", f"Bearer {self.token}"))
        if self.impersonate:
            out.append(("Impersonate-User", self.impersonate))
        out.extend(("Impersonate-Group", group) for group in self.impersonate_groups)
        return out

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https://"):
            return False
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if self.ca_data:
            return ssl.create_default_context(cadata=self.ca_data.decode())
        return ssl.create_default_context()


def home() -> Path:
    return Path(os.environ.get("KUMO_HOME", Path.home() / ".kumo"))


def default_path() -> Path:
    explicit = os.environ.get("KUMOCONFIG")
    return Path(explicit) if explicit else home() / "config"


@dataclass(slots=True)
class KubeConfig:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> KubeConfig:
        path = path or default_path()
        if not path.exists():
            return cls(path, _empty())
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a kubeconfig-style mapping")
        for section in ("clusters", "users", "contexts"):
            data.setdefault(section, [])
        return cls(path, data)

    def _find(self, section: str, name: str) -> dict[str, Any] | None:
        for item in self.data.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                found: dict[str, Any] = item
                return found
        return None

    def _upsert(self, section: str, name: str, key: str, value: dict[str, Any]) -> None:
        existing = self._find(section, name)
        if existing is None:
            self.data.setdefault(section, []).append({"name": name, key: value})
        else:
            existing[key] = value

    @property
    def current_context(self) -> str:
        return str(self.data.get("current-context") or "")

    def context_names(self) -> list[str]:
        return [str(c.get("name")) for c in self.data.get("contexts") or [] if isinstance(c, dict)]

    def context(self, name: str) -> dict[str, Any] | None:
        found = self._find("contexts", name)
        return None if found is None else dict(found.get("context") or {})

    def use_context(self, name: str) -> None:
        if self._find("contexts", name) is None:
            raise ConfigError(f'no context named "{name}"; see `kumo config get-contexts`')
        self.data["current-context"] = name

    def set_cluster(self, name: str, server: str, ca_pem: bytes | None) -> None:
        cluster: dict[str, Any] = {"server": server}
        if ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
        self._upsert("clusters", name, "cluster", cluster)

    def set_user(self, name: str, token: str) -> None:
        self._upsert("users", name, "user", {"token": token})

    def set_context(self, name: str, cluster: str, user: str, namespace: str = "default") -> None:
        self._upsert(
            "contexts", name, "context", {"cluster": cluster, "user": user, "namespace": namespace}
        )

    def set_namespace(self, namespace: str, context: str | None = None) -> None:
        name = context or self.current_context
        found = self._find("contexts", name)
        if found is None:
            raise ConfigError(f'no context named "{name}"')
        found.setdefault("context", {})["namespace"] = namespace

    def save(self) -> None:
        """Atomically, mode 0600 (the file holds tokens)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-")
        try:
            with os.fdopen(handle, "w") as out:
                yaml.safe_dump(self.data, out, sort_keys=False)
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def resolve(self, context: str | None = None) -> ClientConfig:
        name = context or self.current_context
        if not name:
            raise ConfigError(
                f"no current context in {self.path}: start kumo with `kumo up` (it writes this file)"
                " or pick one with `kumo config use-context NAME`"
            )
        ctx = self.context(name)
        if ctx is None:
            raise ConfigError(
                f'context "{name}" is not in {self.path}; see `kumo config get-contexts`'
            )
        cluster = self._find("clusters", str(ctx.get("cluster", "")))
        if cluster is None:
            raise ConfigError(
                f'context "{name}" names cluster "{ctx.get("cluster")}", which {self.path} does not define'
            )
        cluster_data = cluster.get("cluster") or {}
        user = self._find("users", str(ctx.get("user", ""))) or {}
        user_data = user.get("user") or {}
        ca_data = None
        if cluster_data.get("certificate-authority-data"):
            ca_data = base64.b64decode(cluster_data["certificate-authority-data"])
        elif cluster_data.get("certificate-authority"):
            ca_data = Path(cluster_data["certificate-authority"]).read_bytes()
        token = user_data.get("token")
        if not token and user_data.get("tokenFile"):
            token = Path(user_data["tokenFile"]).read_text().strip()
        return ClientConfig(
            server=str(cluster_data.get("server", "")).rstrip("/"),
            token=token,
            ca_data=ca_data,
            insecure=bool(cluster_data.get("insecure-skip-tls-verify")),
            namespace=str(ctx.get("namespace") or "default"),
            context=name,
            user=str(ctx.get("user", "")),
        )


def _empty() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": "",
    }


def in_cluster() -> ClientConfig | None:
    """The service-account configuration inside a kumo pod, if this is one: the mounted
    token, CA and namespace, and the API server from ``KUMO_SERVICE_HOST_URL`` or, as
    Kubernetes clients find it, ``KUBERNETES_SERVICE_HOST`` / ``KUBERNETES_SERVICE_PORT``."""
    token_file = SERVICE_ACCOUNT_DIR / "token"
    server = os.environ.get("KUMO_SERVICE_HOST_URL")
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not server and host:
        port = os.environ.get("KUBERNETES_SERVICE_PORT") or "443"
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    if not server or not token_file.exists():
        return None
    ca_file = SERVICE_ACCOUNT_DIR / "ca.crt"
    namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
    return ClientConfig(
        server=server,
        token=token_file.read_text().strip(),
        ca_data=ca_file.read_bytes() if ca_file.exists() else None,
        namespace=namespace_file.read_text().strip() if namespace_file.exists() else "default",
        context="in-cluster",
    )


def load(path: Path | None = None, context: str | None = None) -> ClientConfig:
    config_path = path or default_path()
    if not config_path.exists():
        found = in_cluster()
        if found is not None:
            return found
        raise ConfigError(
            f"no client configuration at {config_path}: run `kumo up` first (it writes one)"
        )
    return KubeConfig.load(config_path).resolve(context)
