"""ServiceAccount admission for pods being created (Kubernetes' ServiceAccount plugin).

1. ``spec.serviceAccountName`` defaults to ``default`` (or the deprecated
   ``spec.serviceAccount``).
2. The account must exist in the pod's namespace, else 403::

       pods "x" is forbidden: error looking up service account ns/sa: serviceaccount "sa" not found

   The ``default`` account is the exception: the serviceaccount controller keeps one in
   every namespace, and where no controller runs (an API server alone) it is created here,
   so a pod never waits on it.
3. Unless ``automountServiceAccountToken`` is false (the pod's, else the account's), the pod
   gets a projected volume ``kube-api-access-<5 chars>``: a bound token from the TokenRequest
   API (``token``, ``expirationSeconds: 3607``, refreshed by the node agent), the cluster CA
   from the namespace's ``kube-root-ca.crt`` ConfigMap (``ca.crt``) and the pod's namespace
   (``namespace``). Every container and init container mounts it read-only at
   ``/var/run/secrets/kumo.dev/serviceaccount`` and, for Kubernetes client libraries, at
   ``/var/run/secrets/kubernetes.io/serviceaccount`` — unless it already mounts something
   there. A pod that already has a ``kube-api-access-*`` volume keeps it (a copied spec).

   The ``kube-root-ca.crt`` ConfigMap is the root-ca-cert-publisher controller's job; where
   none runs yet it is created here from the server's CA, so the volume can always mount.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from pathlib import Path
from typing import Any

from kumo.auth.user import UserInfo
from kumo.model.core import ConfigMap, ServiceAccount
from kumo.model.registry import ResourceInfo, for_model
from kumo.platform.api import admission
from kumo.platform.api.errors import forbidden
from kumo.platform.api.resources import storage_key
from kumo.platform.store import AlreadyExists
from kumo.platform.store.sqlite import SQLiteStore

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_SERVICE_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kumo.dev/serviceaccount"
KUBERNETES_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
MOUNT_PATHS = (MOUNT_PATH, KUBERNETES_MOUNT_PATH)
# Kubernetes asks for 3607 s: a token the server may extend, and recognisably a default one.
TOKEN_EXPIRATION_SECONDS = 3607
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kumo API server when using internal"
    " endpoints such as the internal service IP or kubernetes.default.svc. No other usage is"
    " guaranteed across distributions of Kubernetes clusters."
)
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"

SERVICE_ACCOUNT_INFO = for_model(ServiceAccount)
CONFIG_MAP_INFO = for_model(ConfigMap)


def account_name(spec: Obj) -> str:
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "") or (
        DEFAULT_SERVICE_ACCOUNT
    )


def should_automount(account: Obj | None, spec: Obj) -> bool:
    """The pod's ``automountServiceAccountToken`` wins; then the account's; else true."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account is not None and account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def token_volume(name: str) -> Obj:
    """Kubernetes' kube-api-access volume source."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {
                    "serviceAccountToken": {
                        "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                        "path": "token",
                    }
                },
                {
                    "configMap": {
                        "name": ROOT_CA_CONFIG_MAP,
                        "items": [{"key": ROOT_CA_KEY, "path": ROOT_CA_KEY}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def random_volume_name() -> str:
    return VOLUME_PREFIX + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))


def mount_token(spec: Obj, volume_name: str | None = None) -> str:
    """Add the token volume (unless there is one) and its mounts; return the volume's name."""
    volumes: list[Obj] = spec.setdefault("volumes", []) or []
    spec["volumes"] = volumes
    existing = next(
        (str(v.get("name")) for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)),
        None,
    )
    name = existing or volume_name or random_volume_name()
    if existing is None:
        taken = {str(v.get("name")) for v in volumes}
        while name in taken:
            name = random_volume_name()
        volumes.append(token_volume(name))
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            mounts: list[Obj] = container.get("volumeMounts") or []
            used = {str(m.get("mountPath", "")).rstrip("/") for m in mounts}
            for path in MOUNT_PATHS:
                if path not in used:
                    mounts.append({"name": name, "readOnly": True, "mountPath": path})
            container["volumeMounts"] = mounts
    return name


class ServiceAccountAdmission:
    """The admission plugin. ``ca_file`` is the cluster CA (PEM) the API server serves with."""

    def __init__(self, store: SQLiteStore, ca_file: Path | None = None) -> None:
        self.store = store
        self.ca_file = ca_file
        self._ca_data: bytes | None = None

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: Obj,
        old: Obj | None,
        user: UserInfo,
    ) -> list[str] | None:
        if info.kind != "Pod" or info.group or operation != "CREATE":
            return None
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        pod_name = str(meta.get("name") or "")
        spec: Obj = obj.setdefault("spec", {})
        name = account_name(spec)
        spec["serviceAccountName"] = name
        account = await self._account(namespace, name)
        if account is None:
            raise forbidden(
                f'pods "{pod_name}" is forbidden: error looking up service account'
                f' {namespace}/{name}: serviceaccount "{name}" not found',
                info,
                pod_name or None,
            )
        if should_automount(account, spec):
            mount_token(spec)
            await self._ensure_root_ca(namespace)
        return None

    async def _account(self, namespace: str, name: str) -> Obj | None:
        key = storage_key(SERVICE_ACCOUNT_INFO, namespace, name)
        entry = self.store.get_entry(key)
        if entry is not None:
            return entry.obj
        if name != DEFAULT_SERVICE_ACCOUNT:
            return None
        body = {"metadata": {"name": name}}
        return await self._create(SERVICE_ACCOUNT_INFO, ServiceAccount, body, namespace)

    async def _ensure_root_ca(self, namespace: str) -> None:
        key = storage_key(CONFIG_MAP_INFO, namespace, ROOT_CA_CONFIG_MAP)
        if self.store.get_entry(key) is not None:
            return
        ca = self._ca()
        if ca is None:
            return
        body = {
            "metadata": {
                "name": ROOT_CA_CONFIG_MAP,
                "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
            },
            "data": {ROOT_CA_KEY: ca.decode()},
        }
        await self._create(CONFIG_MAP_INFO, ConfigMap, body, namespace)

    def _ca(self) -> bytes | None:
        if self._ca_data is None and self.ca_file is not None:
            with contextlib.suppress(OSError):
                self._ca_data = self.ca_file.read_bytes()
        return self._ca_data

    async def _create(
        self, info: ResourceInfo, model_type: type[Any], body: Obj, namespace: str
    ) -> Obj | None:
        """Store a new object the way a create through the API would."""
        model = model_type.model_validate(body)
        admission.prepare_create(info, model, namespace)
        wire = admission.admit_new(info, model)
        key = storage_key(info, namespace, str(wire["metadata"]["name"]))
        try:
            stored = await self.store.create(key, wire)
        except AlreadyExists:
            entry = self.store.get_entry(key)
            return entry.obj if entry is not None else None
        log.info("created %s %s/%s for a pod", info.kind, namespace, wire["metadata"]["name"])
        return stored
