"""Every active namespace has a ``default`` ServiceAccount (Kubernetes' serviceaccounts
controller): created with the namespace, and created again if it is deleted."""

from __future__ import annotations

import logging

from kumo.client import ApiException
from kumo.model.core import Namespace, ServiceAccount
from kumo.platform.controllers.informer import EventHandler, Obj
from kumo.platform.controllers.runner import Controller, Result

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNT = "default"


def needs_default_account(namespace: Obj | None, account: Obj | None) -> bool:
    """Pure rule: an existing, active namespace without the account needs one."""
    if namespace is None or account is not None:
        return False
    meta = namespace.get("metadata") or {}
    phase = (namespace.get("status") or {}).get("phase")
    return not meta.get("deletionTimestamp") and phase != "Terminating"


class ServiceAccountController(Controller):
    """Queue keys are namespace names."""

    name = "serviceaccount"
    workers = 1

    def setup(self) -> None:
        self.namespaces = self.informers.informer(Namespace)
        self.accounts = self.informers.informer(ServiceAccount)
        self.namespaces.add_event_handler(
            EventHandler(
                on_add=self._namespace_changed,
                on_update=lambda _, new: self._namespace_changed(new),
            )
        )
        self.accounts.add_event_handler(EventHandler(on_delete=self._account_deleted))

    def _namespace_changed(self, namespace: Obj) -> None:
        self.queue.add(str((namespace.get("metadata") or {}).get("name")))

    def _account_deleted(self, account: Obj) -> None:
        meta = account.get("metadata") or {}
        if meta.get("name") == DEFAULT_SERVICE_ACCOUNT:
            self.queue.add(str(meta.get("namespace")))

    async def reconcile(self, key: str) -> Result | None:
        namespace = self.namespaces.get(None, key)
        account = self.accounts.get(key, DEFAULT_SERVICE_ACCOUNT)
        if not needs_default_account(namespace, account):
            return None
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": key},
        }
        try:
            await self.client.create_raw(body, key)
        except ApiException as exc:
            # Already there (our cache lags), or the namespace went away or began terminating.
            terminating = exc.code == 403 and "being terminated" in exc.message
            if exc.already_exists or exc.not_found or terminating:
                return None
            raise
        log.info("namespace %s: created service account %s", key, DEFAULT_SERVICE_ACCOUNT)
        return None
