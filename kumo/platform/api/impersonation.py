"""Impersonation headers, as Kubernetes reads them.

``Impersonate-User``, ``Impersonate-Group`` (repeatable), ``Impersonate-Uid`` and
``Impersonate-Extra-<key>`` make the request act as another user. Each needs the
``impersonate`` verb: on ``users`` (or ``serviceaccounts`` in the account's namespace for
``system:serviceaccount:NS:NAME``), ``groups``, ``uids`` and ``userextras/<key>``, with the
value as the resource name. Groups, a uid or extras without a user are a bad request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.datastructures import Headers

from kumo.auth.authorizer import Attributes
from kumo.auth.rbac import parse_service_account
from kumo.auth.user import AUTHENTICATED, UserInfo
from kumo.platform.api.errors import bad_request

USER = "impersonate-user"
GROUP = "impersonate-group"
UID = "impersonate-uid"
EXTRA_PREFIX = "impersonate-extra-"
ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
SERVICE_ACCOUNTS = "system:serviceaccounts"


def requested(headers: Headers) -> bool:
    return any(key in (USER, GROUP, UID) or key.startswith(EXTRA_PREFIX) for key in headers)


async def impersonate(
    user: UserInfo,
    headers: Headers,
    check: Callable[[Attributes], Awaitable[None]],
) -> UserInfo:
    """The user the request acts as; ``check`` raises (403) for anything not allowed."""
    name = headers.get(USER, "").strip()
    groups = [g.strip() for g in headers.getlist(GROUP) if g.strip()]
    uid = headers.get(UID, "").strip()
    extra: dict[str, tuple[str, ...]] = {}
    for key in {k for k in headers if k.startswith(EXTRA_PREFIX)}:
        extra_key = unquote(key[len(EXTRA_PREFIX) :])
        extra[extra_key] = tuple(headers.getlist(key))
    if not name:
        raise bad_request(
            "impersonating groups, a uid or extra fields needs Impersonate-User as well"
        )
    account = parse_service_account(name)
    if account is not None:
        await check(
            Attributes(
                user=user,
                verb="impersonate",
                resource="serviceaccounts",
                namespace=account[0],
                name=account[1],
            )
        )
    else:
        await check(Attributes(user=user, verb="impersonate", resource="users", name=name))
    for group in groups:
        await check(Attributes(user=user, verb="impersonate", resource="groups", name=group))
    if uid:
        await check(
            Attributes(
                user=user,
                verb="impersonate",
                api_group="authentication.k8s.io",
                resource="uids",
                name=uid,
            )
        )
    for key, values in extra.items():
        for value in values:
            await check(
                Attributes(
                    user=user,
                    verb="impersonate",
                    api_group="authentication.k8s.io",
                    resource="userextras",
                    subresource=key,
                    name=value,
                )
            )
    if account is not None:
        for implied in (SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{account[0]}"):
            if implied not in groups:
                groups.append(implied)
    implied_auth = UNAUTHENTICATED if name == ANONYMOUS else AUTHENTICATED
    if implied_auth not in groups:
        groups.append(implied_auth)
    return UserInfo(name=name, uid=uid, groups=tuple(groups), extra=extra)
