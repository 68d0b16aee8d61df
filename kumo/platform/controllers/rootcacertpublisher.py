"""Every active namespace has a ``kube-root-ca.crt`` ConfigMap holding the cluster CA
(Kubernetes' root-ca-cert-publisher): pods mount its ``ca.crt`` next to their service-account
token to verify the API server. Created with the namespace, written back when its data is
changed, created again when it is deleted."""

from __future__ import annotations

import copy
import logging

from kumo.client import ApiException
from kumo.model.core import ConfigMap, Namespace
from kumo.platform.controllers.informer import EventHandler, Obj
from kumo.platform.controllers.runner import Controller, Result

log = logging.getLogger(__name__)

ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kumo API server when using internal"
    " endpoints such as the internal service IP or kubernetes.default.svc. No other usage is"
    " guaranteed across distributions of Kubernetes clusters."
)


def wanted_data(ca: str) -> dict[str, str]:
    return {ROOT_CA_KEY: ca}


def plan(namespace: Obj | None, config_map: Obj | None, ca: str) -> str | None:
    """Pure rule: ``create``, ``update`` or None (nothing to do) for one namespace."""
    if namespace is None:
        return None
    meta = namespace.get("metadata") or {}
    phase = (namespace.get("status") or {}).get("phase")
    if meta.get("deletionTimestamp") or phase == "Terminating":
        return None
    if config_map is None:
        return "create"
    annotations = (config_map.get("metadata") or {}).get("annotations") or {}
    if config_map.get("data") != wanted_data(ca) or config_map.get("binaryData"):
        return "update"
    if annotations.get(DESCRIPTION_ANNOTATION) != DESCRIPTION:
        return "update"
    return None


class RootCACertPublisher(Controller):
    """Queue keys are namespace names. The CA is the one the controllers' client trusts."""

    name = "root-ca-cert-publisher"
    workers = 1

    def setup(self) -> None:
        ca = self.client.config.ca_data
        self.ca = ca.decode() if ca else ""
        self.namespaces = self.informers.informer(Namespace)
        self.config_maps = self.informers.informer(ConfigMap)
        self.namespaces.add_event_handler(
            EventHandler(
                on_add=self._namespace_changed,
                on_update=lambda _, new: self._namespace_changed(new),
            )
        )
        self.config_maps.add_event_handler(
            EventHandler(
                on_update=lambda _, new: self._config_map_changed(new),
                on_delete=self._config_map_changed,
            )
        )

    def _namespace_changed(self, namespace: Obj) -> None:
        self.queue.add(str((namespace.get("metadata") or {}).get("name")))

    def _config_map_changed(self, config_map: Obj) -> None:
        meta = config_map.get("metadata") or {}
        if meta.get("name") == ROOT_CA_CONFIG_MAP:
            self.queue.add(str(meta.get("namespace")))

    async def reconcile(self, key: str) -> Result | None:
        if not self.ca:
            return None  # a client without a CA (plain HTTP): nothing to publish
        namespace = self.namespaces.get(None, key)
        current = self.config_maps.get(key, ROOT_CA_CONFIG_MAP)
        action = plan(namespace, current, self.ca)
        if action is None:
            return None
        try:
            if action == "create":
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": ROOT_CA_CONFIG_MAP,
                        "namespace": key,
                        "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
                    },
                    "data": wanted_data(self.ca),
                }
                await self.client.create_raw(body, key)
                log.info("namespace %s: published %s", key, ROOT_CA_CONFIG_MAP)
            else:
                assert current is not None
                updated = copy.deepcopy(current)
                meta = updated.setdefault("metadata", {})
                annotations = meta.get("annotations") or {}
                annotations[DESCRIPTION_ANNOTATION] = DESCRIPTION
                meta["annotations"] = annotations
                updated["data"] = wanted_data(self.ca)
                updated.pop("binaryData", None)
                await self.client.replace_raw(updated, key)
                log.info("namespace %s: restored %s", key, ROOT_CA_CONFIG_MAP)
        except ApiException as exc:
            # Created or changed meanwhile (our cache lags: the next event brings it back
            # here), gone, or the namespace began terminating.
            terminating = exc.code == 403 and "being terminated" in exc.message
            if exc.already_exists or exc.conflict or exc.not_found or terminating:
                return None
            raise
        return None
