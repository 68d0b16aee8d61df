"""ResourceQuota admission: a write that would take a namespace past a quota is refused.

Worded like Kubernetes::

    pods "web-x" is forbidden: exceeded quota: team-quota, requested: pods=1, used: pods=3, limited: pods=3
    pods "web-x" is forbidden: failed quota: team-quota: must specify limits.cpu for: main

Usage is counted from the store (its in-memory state), not from the quota's status, which
the resourcequota controller keeps up to date for people to read. Creates and updates that
a quota tracks in one namespace take turns (``lock_key``): the API server holds that lock
from this check until the object is stored, so two creates racing for the last slot cannot
both pass.
"""

from __future__ import annotations

import datetime
from typing import Any

from kumo.auth.user import UserInfo
from kumo.model.core import ResourceQuota
from kumo.model.quota import (
    ZERO,
    Amounts,
    matches_scopes,
    missing_requests,
    parse_hard,
    pretty,
    subtract_non_negative,
    total_usage,
    tracks,
    usage,
)
from kumo.model.registry import ResourceInfo, for_model
from kumo.platform.api.errors import ApiError, forbidden
from kumo.platform.store.sqlite import SQLiteStore

QUOTA_INFO = for_model(ResourceQuota)


def _prefix(info: ResourceInfo, namespace: str) -> str:
    group = info.group or "core"
    return f"registry/{group}/{info.plural}/{namespace}/"


def _namespace(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


class ResourceQuotaAdmission:
    """The admission plugin; ``lock_key`` tells the API server what to serialize on."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def _quotas(self, info: ResourceInfo, namespace: str) -> list[dict[str, Any]]:
        """Quotas in ``namespace`` with a hard limit this kind is charged to, by name."""
        if not namespace or not info.namespaced:
            return []
        result = await self.store.list(_prefix(QUOTA_INFO, namespace))
        out = []
        for entry in result.items:
            hard = ((entry.obj.get("spec") or {}).get("hard")) or {}
            if any(tracks(info.plural, info.group, name) for name in hard):
                out.append(entry.obj)
        return sorted(out, key=_name)

    def _delta(
        self, operation: str, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> Amounts:
        now = datetime.datetime.now(datetime.UTC)
        new_usage = usage(info.plural, info.group, obj, now)
        if operation == "UPDATE" and old is not None:
            return subtract_non_negative(new_usage, usage(info.plural, info.group, old, now))
        return new_usage

    async def lock_key(
        self,
        operation: str,
        info: ResourceInfo,
        namespace: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
    ) -> str | None:
        """``quota/<namespace>`` for creates of a kind a quota there tracks, and for updates
        that would use more of it."""
        if operation not in ("CREATE", "UPDATE") or not await self._quotas(info, namespace):
            return None
        if operation == "UPDATE" and (
            obj is None or not any(self._delta(operation, info, obj, old).values())
        ):
            return None
        return f"quota/{namespace}"

    async def admit(
        self,
        operation: str,
        info: ResourceInfo,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: UserInfo,
    ) -> list[str] | None:
        if operation not in ("CREATE", "UPDATE"):
            return None
        namespace = _namespace(obj)
        quotas = await self._quotas(info, namespace)
        if not quotas:
            return None
        delta = self._delta(operation, info, obj, old)
        if operation == "UPDATE" and not any(delta.values()):
            return None
        applicable = []
        for quota in quotas:
            spec = quota.get("spec") or {}
            if not matches_scopes(spec.get("scopes") or [], info.plural, info.group, obj):
                continue
            hard = parse_hard(spec.get("hard"))
            charged = [name for name in hard if tracks(info.plural, info.group, name)]
            applicable.append((quota, hard, charged))
        subject = f'{info.group_resource} "{_name(obj)}"'
        if info.kind == "Pod" and operation == "CREATE":
            for quota, _, charged in applicable:
                missing = missing_requests(charged, obj)
                if missing:
                    detail = "; ".join(
                        f"{name} for: {','.join(sorted(set(containers)))}"
                        for name, containers in sorted(missing.items())
                    )
                    raise self._refuse(
                        info,
                        obj,
                        f"{subject} is forbidden: failed quota: {_name(quota)}: must specify {detail}",
                    )
        if not applicable:
            return None
        existing = await self.store.list(_prefix(info, namespace))
        objects = [entry.obj for entry in existing.items]
        for quota, hard, charged in applicable:
            requested = {name: delta[name] for name in charged if name in delta}
            if not requested:
                continue
            scopes = (quota.get("spec") or {}).get("scopes") or []
            used = total_usage(info.plural, info.group, objects, scopes)
            over = [name for name in requested if used.get(name, 0) + requested[name] > hard[name]]
            if over:
                raise self._refuse(
                    info,
                    obj,
                    f"{subject} is forbidden: exceeded quota: {_name(quota)}, "
                    f"requested: {pretty({n: requested[n] for n in over})}, "
                    f"used: {pretty({n: used.get(n, ZERO) for n in over})}, "
                    f"limited: {pretty({n: hard[n] for n in over})}",
                )
        return None

    @staticmethod
    def _refuse(info: ResourceInfo, obj: dict[str, Any], message: str) -> ApiError:
        return forbidden(message, info, _name(obj) or None)
