"""GatewayRestriction: the gateway may change a Function in one way only.

RBAC gives ``system:kumo:gateway`` ``patch`` on ``functions.kumo.dev`` because a request for a
function with no ready pod asks for a cold start by setting the annotation
``kumo.dev/activation-requested-at`` (``ACTIVATION_ANNOTATION``). RBAC cannot say which
fields a patch may touch; this admission step does, as NodeRestriction does for nodes: an
update by the gateway that changes anything else of a Function (its spec, labels, other
annotations, owners, finalizers; its status is another subresource RBAC does not grant) is
a 403 naming the gateway. Server-kept metadata (resourceVersion, generation,
managedFields) is not compared.
"""

from __future__ import annotations

from typing import Any

from kumo.auth.user import GATEWAY_USER, UserInfo
from kumo.model.functions import ACTIVATION_ANNOTATION
from kumo.model.registry import ResourceInfo
from kumo.platform.api.errors import forbidden

__all__ = ["GatewayRestriction", "changes_beyond_activation"]

_SERVER_KEPT = ("resourceVersion", "generation", "managedFields")


def _comparable(obj: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(obj or {})
    meta = {k: v for k, v in (out.get("metadata") or {}).items() if k not in _SERVER_KEPT}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != ACTIVATION_ANNOTATION
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def changes_beyond_activation(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    """The top-level parts (``spec``, ``metadata.labels``, ...) that differ between ``old``
    and ``obj`` once the activation annotation and server-kept metadata are set aside."""
    new, before = _comparable(obj), _comparable(old)
    changed: list[str] = []
    for key in sorted(set(new) | set(before)):
        if key == "metadata":
            meta_new, meta_old = new["metadata"], before["metadata"]
            changed.extend(
                f"metadata.{name}"
                for name in sorted(set(meta_new) | set(meta_old))
                if meta_new.get(name) != meta_old.get(name)
            )
        elif new.get(key) != before.get(key):
            changed.append(key)
    return changed


class GatewayRestriction:
    """The admission plugin (``kumo.platform.api.admission.AdmissionPlugin``)."""

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
    ) -> list[str] | None:
        if user.name != GATEWAY_USER or info.group != "kumo.dev" or info.plural != "functions":
            return None
        name = str((obj.get("metadata") or {}).get("name") or "")
        if operation != "UPDATE":
            raise forbidden(
                f'{info.group_resource} "{name}" is forbidden: the gateway ({GATEWAY_USER}) '
                f"may only set the annotation {ACTIVATION_ANNOTATION} of a function",
                info,
                name or None,
            )
        changed = changes_beyond_activation(obj, old)
        if changed:
            raise forbidden(
                f'{info.group_resource} "{name}" is forbidden: the gateway ({GATEWAY_USER}) '
                f"may only set the annotation {ACTIVATION_ANNOTATION}, not change "
                + ", ".join(changed),
                info,
                name or None,
            )
        return None
