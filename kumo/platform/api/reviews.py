"""Kinds served without storage, as Kubernetes serves them (create only, nothing stored):

- ``authorization.k8s.io/v1`` SelfSubjectAccessReview, SubjectAccessReview and
  LocalSubjectAccessReview: "may this user do this?", answered by the API's authorizer;
- ``authentication.k8s.io/v1`` SelfSubjectReview ("who am I?") and TokenReview ("whose is
  this token, and for which audiences?");
- the TokenRequest subresource ``POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token``
  (``create`` on ``serviceaccounts/token``; a node's is the Node authorizer's, and
  NodeRestriction's ``check_token_request``): a signed service-account token, optionally
  bound to a Pod, for ``spec.audiences`` (default: the API server's) and
  ``spec.expirationSeconds`` (default 3600, at least 600);
- ``kumo.dev/v1`` UserToken at ``/apis/kumo.dev/v1/usertokens[/{id}]``: administrators'
  user tokens. ``create`` answers the token once (only its hash is stored), ``list`` and
  ``get`` show the records without secrets, ``delete`` revokes. Besides ``create`` on
  ``usertokens``, making a token for a user and groups needs ``impersonate`` on them, so
  nobody can mint a token with more rights than they could act with.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kumo.auth.authorizer import Attributes
from kumo.auth.rbac import parse_service_account
from kumo.auth.service_accounts import (
    DEFAULT_EXPIRATION_SECONDS,
    MAX_EXPIRATION_SECONDS,
    MIN_EXPIRATION_SECONDS,
    BoundPod,
)
from kumo.auth.user import UserInfo
from kumo.model.meta import now_rfc3339
from kumo.platform.api import admission, discovery
from kumo.platform.api.app import ApiState
from kumo.platform.api.errors import ApiError, bad_request, invalid
from kumo.platform.api.noderestriction import check_token_request
from kumo.platform.api.resources import read_body

if TYPE_CHECKING:
    from kumo.platform.api.access import Access

AUTHZ = "authorization.k8s.io"
AUTHN = "authentication.k8s.io"
KUMO = "kumo.dev"
MAX_BODY = 256 * 1024


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.kumo
    return state


def _access(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


async def _body(request: Request, kind: str) -> dict[str, Any]:
    raw = admission.decode_body(
        await read_body(request, MAX_BODY), request.headers.get("content-type", "application/json")
    )
    if not isinstance(raw, dict):
        raise bad_request(f"the request body must be a {kind} object")
    given = raw.get("kind")
    if given not in (None, "", kind):
        raise bad_request(f'the request body is a "{given}", this endpoint takes "{kind}"')
    return raw


async def _caller(
    request: Request,
    verb: str,
    group: str,
    resource: str,
    *,
    namespace: str = "",
    name: str = "",
    subresource: str = "",
) -> UserInfo:
    state = _state(request)
    user = await state.authenticate(request)
    await state.authorize(
        Attributes(
            user=user,
            verb=verb,
            api_group=group,
            resource=resource,
            subresource=subresource,
            namespace=namespace,
            name=name,
        )
    )
    return user


def user_info(user: UserInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        out["uid"] = user.uid
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{where}: must be a list of strings")
    return list(value)


# ---- access reviews -------------------------------------------------------------------------


def _review_attributes(
    kind: str, spec: dict[str, Any], user: UserInfo, namespace: str | None = None
) -> Attributes:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        raise invalid(
            kind,
            AUTHZ,
            "",
            [
                (
                    "spec.resourceAttributes",
                    "Invalid value: exactly one of nonResourceAttributes or "
                    "resourceAttributes must be specified",
                )
            ],
        )
    if non_resource is not None:
        if namespace is not None:
            raise invalid(
                kind,
                AUTHZ,
                "",
                [
                    (
                        "spec.nonResourceAttributes",
                        "Invalid value: disallowed on this kind of request",
                    )
                ],
            )
        if not isinstance(non_resource, dict):
            raise bad_request("spec.nonResourceAttributes must be an object")
        return Attributes(
            user=user,
            verb=str(non_resource.get("verb") or ""),
            path=str(non_resource.get("path") or ""),
        )
    if not isinstance(resource, dict):
        raise bad_request("spec.resourceAttributes must be an object")
    asked_namespace = str(resource.get("namespace") or "")
    if namespace is not None and asked_namespace != namespace:
        raise invalid(
            kind,
            AUTHZ,
            "",
            [
                (
                    "spec.resourceAttributes.namespace",
                    f'Invalid value: "{asked_namespace}": must match metadata.namespace',
                )
            ],
        )
    return Attributes(
        user=user,
        verb=str(resource.get("verb") or ""),
        api_group=str(resource.get("group") or ""),
        resource=str(resource.get("resource") or ""),
        subresource=str(resource.get("subresource") or ""),
        namespace=asked_namespace,
        name=str(resource.get("name") or ""),
    )


async def _answer_review(
    request: Request, raw: dict[str, Any], kind: str, attributes: Attributes
) -> Response:
    decision = await _state(request).authorizer.authorize(attributes)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    out = {
        "kind": kind,
        "apiVersion": f"{AUTHZ}/v1",
        "metadata": {**(raw.get("metadata") or {}), "creationTimestamp": None},
        "spec": raw.get("spec") or {},
        "status": status,
    }
    return _json(out, 201)


def _spec(raw: dict[str, Any]) -> dict[str, Any]:
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise bad_request("spec: must be an object")
    return spec


async def self_subject_access_review(request: Request) -> Response:
    kind = "SelfSubjectAccessReview"
    user = await _caller(request, "create", AUTHZ, "selfsubjectaccessreviews")
    raw = await _body(request, kind)
    attributes = _review_attributes(kind, _spec(raw), user)
    return await _answer_review(request, raw, kind, attributes)


def _subject(kind: str, spec: dict[str, Any]) -> UserInfo:
    name = str(spec.get("user") or "")
    groups = _strings(spec.get("groups"), "spec.groups")
    if not name and not groups:
        raise invalid(
            kind,
            AUTHZ,
            "",
            [("spec.user", 'Invalid value: "": at least one of user or group must be specified')],
        )
    extra_raw = spec.get("extra") or {}
    if not isinstance(extra_raw, dict):
        raise bad_request("spec.extra: must be an object of string lists")
    extra = {str(k): tuple(_strings(v, f"spec.extra.{k}")) for k, v in extra_raw.items()}
    return UserInfo(name=name, uid=str(spec.get("uid") or ""), groups=tuple(groups), extra=extra)


async def subject_access_review(request: Request) -> Response:
    kind = "SubjectAccessReview"
    await _caller(request, "create", AUTHZ, "subjectaccessreviews")
    raw = await _body(request, kind)
    spec = _spec(raw)
    attributes = _review_attributes(kind, spec, _subject(kind, spec))
    return await _answer_review(request, raw, kind, attributes)


async def local_subject_access_review(request: Request) -> Response:
    kind = "LocalSubjectAccessReview"
    namespace = str(request.path_params["namespace"])
    await _caller(request, "create", AUTHZ, "localsubjectaccessreviews", namespace=namespace)
    raw = await _body(request, kind)
    given = (raw.get("metadata") or {}).get("namespace")
    if given and given != namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    spec = _spec(raw)
    attributes = _review_attributes(kind, spec, _subject(kind, spec), namespace)
    raw.setdefault("metadata", {})["namespace"] = namespace
    return await _answer_review(request, raw, kind, attributes)


# ---- authentication reviews ----------------------------------------------------------------


async def self_subject_review(request: Request) -> Response:
    kind = "SelfSubjectReview"
    user = await _caller(request, "create", AUTHN, "selfsubjectreviews")
    raw = await _body(request, kind)
    return _json(
        {
            "kind": kind,
            "apiVersion": f"{AUTHN}/v1",
            "metadata": {**(raw.get("metadata") or {}), "creationTimestamp": None},
            "status": {"userInfo": user_info(user)},
        },
        201,
    )


async def token_review(request: Request) -> Response:
    kind = "TokenReview"
    await _caller(request, "create", AUTHN, "tokenreviews")
    raw = await _body(request, kind)
    spec = _spec(raw)
    token = spec.get("token")
    if not isinstance(token, str) or not token:
        raise invalid(kind, AUTHN, "", [("spec.token", "Required value")])
    audiences = _strings(spec.get("audiences"), "spec.audiences")
    found = await _state(request).authenticators.review(token, audiences)
    if found is None:
        status: dict[str, Any] = {
            "authenticated": False,
            "user": {},
            "error": "the token is unknown, expired, revoked or not meant for these audiences",
        }
    else:
        user, granted = found
        status = {"authenticated": True, "user": user_info(user), "audiences": granted}
    return _json(
        {
            "kind": kind,
            "apiVersion": f"{AUTHN}/v1",
            "metadata": {**(raw.get("metadata") or {}), "creationTimestamp": None},
            "spec": spec,
            "status": status,
        },
        201,
    )


# ---- TokenRequest -------------------------------------------------------------------------------


def _rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expiration(kind: str, group: str, value: Any, field: str) -> int:
    if value is None:
        return DEFAULT_EXPIRATION_SECONDS
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{field}: must be an integer")
    if value < MIN_EXPIRATION_SECONDS:
        raise invalid(
            kind,
            group,
            "",
            [(field, f"Invalid value: {value}: may not specify a duration less than 10 minutes")],
        )
    if value > MAX_EXPIRATION_SECONDS:
        raise invalid(
            kind,
            group,
            "",
            [
                (
                    field,
                    f"Invalid value: {value}: may not specify a duration larger than 2^32 seconds",
                )
            ],
        )
    return value


async def token_request(request: Request) -> Response:
    kind = "TokenRequest"
    namespace = str(request.path_params["namespace"])
    name = str(request.path_params["name"])
    user = await _caller(
        request,
        "create",
        "",
        "serviceaccounts",
        namespace=namespace,
        name=name,
        subresource="token",
    )
    access = _access(request)
    store = access.store
    raw = await _body(request, kind)
    spec = raw.get("spec") or {}
    if not isinstance(spec, dict):
        raise bad_request("spec: must be an object")
    audiences = _strings(spec.get("audiences"), "spec.audiences") or access.options.audiences
    seconds = _expiration(kind, AUTHN, spec.get("expirationSeconds"), "spec.expirationSeconds")
    account = store.get_entry(f"registry/core/serviceaccounts/{namespace}/{name}")
    if account is None:
        raise ApiError(
            404,
            "NotFound",
            f'serviceaccounts "{name}" not found',
            details={"name": name, "kind": "serviceaccounts"},
        )
    pod: BoundPod | None = None
    bound_pod: dict[str, Any] | None = None
    bound = spec.get("boundObjectRef")
    if bound is not None:
        if not isinstance(bound, dict):
            raise bad_request("spec.boundObjectRef: must be an object")
        bound_kind = bound.get("kind")
        if bound_kind != "Pod" or bound.get("apiVersion", "v1") != "v1":
            raise invalid(
                kind,
                AUTHN,
                "",
                [
                    (
                        "spec.boundObjectRef.kind",
                        f'Unsupported value: "{bound_kind}": supported values: "Pod"',
                    )
                ],
            )
        pod_name = str(bound.get("name") or "")
        entry = store.get_entry(f"registry/core/pods/{namespace}/{pod_name}")
        if entry is None:
            raise ApiError(
                404,
                "NotFound",
                f'pods "{pod_name}" not found',
                details={"name": pod_name, "kind": "pods"},
            )
        pod_meta = entry.obj.get("metadata") or {}
        if bound.get("uid") and bound["uid"] != pod_meta.get("uid"):
            raise ApiError(
                409,
                "Conflict",
                f"the UID in the bound object reference ({bound['uid']}) does not match the UID"
                " in record. The object might have been deleted and then recreated",
            )
        pod_account = (entry.obj.get("spec") or {}).get("serviceAccountName") or "default"
        if pod_account != name:
            raise bad_request(
                f'cannot bind token for serviceaccount "{name}" to pod running with different'
                f' serviceaccount name "{pod_account}"'
            )
        pod = BoundPod(pod_name, str(pod_meta.get("uid") or ""))
        bound_pod = entry.obj
        spec["boundObjectRef"] = {**bound, "apiVersion": "v1", "uid": pod.uid}
    check_token_request(user, name, bound_pod)  # NodeRestriction: pods on the node only
    uid = str((account.obj.get("metadata") or {}).get("uid") or "")
    token, expires = access.signer.issue(
        namespace, name, uid, audiences=audiences, seconds=seconds, pod=pod
    )
    spec["audiences"] = audiences
    spec["expirationSeconds"] = seconds
    return _json(
        {
            "kind": kind,
            "apiVersion": f"{AUTHN}/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now_rfc3339()},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": _rfc3339(expires)},
        },
        201,
    )


# ---- user tokens -------------------------------------------------------------------------------


def _user_token(record: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"user": record.get("user"), "groups": record.get("groups") or []}
    if record.get("description"):
        spec["description"] = record["description"]
    status: dict[str, Any] = {
        "revoked": bool(record.get("revoked")),
        "expired": bool(record.get("expired")),
    }
    if record.get("expires"):
        status["expirationTimestamp"] = record["expires"]
    if record.get("createdBy"):
        status["createdBy"] = record["createdBy"]
    if record.get("revokedAt"):
        status["revocationTimestamp"] = record["revokedAt"]
    if token is not None:
        status["token"] = token
    return {
        "kind": "UserToken",
        "apiVersion": f"{KUMO}/v1",
        "metadata": {"name": record.get("id"), "creationTimestamp": record.get("created")},
        "spec": spec,
        "status": status,
    }


def _token_not_found(name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'usertokens.{KUMO} "{name}" not found',
        details={"name": name, "group": KUMO, "kind": "usertokens"},
    )


async def user_tokens(request: Request) -> Response:
    access = _access(request)
    if request.method in ("GET", "HEAD"):
        await _caller(request, "list", KUMO, "usertokens")
        items = [_user_token(r) for r in access.user_tokens.list()]
        return _json(
            {
                "kind": "UserTokenList",
                "apiVersion": f"{KUMO}/v1",
                "metadata": {"resourceVersion": str(access.store.revision)},
                "items": items,
            }
        )
    kind = "UserToken"
    state = _state(request)
    caller = await _caller(request, "create", KUMO, "usertokens")
    raw = await _body(request, kind)
    spec = raw.get("spec") or {}
    if not isinstance(spec, dict):
        raise bad_request("spec: must be an object")
    user = spec.get("user")
    if not isinstance(user, str) or not user.strip():
        raise invalid(kind, KUMO, "", [("spec.user", "Required value")])
    if parse_service_account(user) is not None or user.startswith("system:serviceaccount:"):
        raise invalid(
            kind,
            KUMO,
            "",
            [
                (
                    "spec.user",
                    f'Invalid value: "{user}": service accounts get their tokens from the'
                    " TokenRequest API (kumo create token)",
                )
            ],
        )
    groups = _strings(spec.get("groups"), "spec.groups")
    description = str(spec.get("description") or "")[:256]
    seconds = spec.get("expirationSeconds")
    expires: str | None = None
    if seconds is not None:
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            raise invalid(
                kind,
                KUMO,
                "",
                [("spec.expirationSeconds", f"Invalid value: {seconds}: must be positive")],
            )
        expires = _rfc3339(int(datetime.datetime.now(datetime.UTC).timestamp()) + seconds)
    # No escalation: the caller must be able to act as that user with those groups.
    await state.check(Attributes(user=caller, verb="impersonate", resource="users", name=user))
    for group in groups:
        await state.check(
            Attributes(user=caller, verb="impersonate", resource="groups", name=group)
        )
    issued = await access.user_tokens.create(
        user, groups, expires=expires, description=description, created_by=caller.name
    )
    record = access.user_tokens.get(issued.token_id) or {}
    return _json(_user_token(record, issued.token), 201)


async def user_token(request: Request) -> Response:
    access = _access(request)
    name = str(request.path_params["name"])
    if request.method == "DELETE":
        await _caller(request, "delete", KUMO, "usertokens", name=name)
        record = await access.user_tokens.revoke(name)
        if record is None:
            raise _token_not_found(name)
        return _json(_user_token(record))
    await _caller(request, "get", KUMO, "usertokens", name=name)
    found = access.user_tokens.get(name)
    if found is None:
        raise _token_not_found(name)
    return _json(_user_token(found))


# ---- discovery of the groups that only have these kinds -------------------------------------


def _group_discovery(group: str) -> Any:
    async def handler(request: Request) -> Response:
        state = _state(request)
        user = await state.authenticate(request)
        await state.authorize(Attributes(user=user, verb="get", path=request.url.path))
        return _json(discovery.api_resource_list(group, "v1"))

    return handler


async def _issuer_document(request: Request, body: dict[str, Any]) -> Response:
    state = _state(request)
    user = await state.authenticate(request)
    await state.authorize(Attributes(user=user, verb="get", path=request.url.path))
    return _json(body)


async def openid_configuration(request: Request) -> Response:
    """Service-account issuer discovery (for verifiers of service-account tokens)."""
    issuer = _access(request).signer.issuer
    return await _issuer_document(
        request,
        {
            "issuer": issuer,
            "jwks_uri": f"{issuer.rstrip('/')}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        },
    )


async def openid_jwks(request: Request) -> Response:
    return await _issuer_document(request, _access(request).signer.jwks())


def install(app: Starlette, access: Access) -> None:
    """Serve these routes ahead of the generic resource routes."""
    app.state.access = access
    routes = [
        Route(f"/apis/{AUTHZ}/v1", _group_discovery(AUTHZ), methods=["GET", "HEAD"]),
        Route(f"/apis/{AUTHN}/v1", _group_discovery(AUTHN), methods=["GET", "HEAD"]),
        Route(
            f"/apis/{AUTHZ}/v1/selfsubjectaccessreviews",
            self_subject_access_review,
            methods=["POST"],
        ),
        Route(f"/apis/{AUTHZ}/v1/subjectaccessreviews", subject_access_review, methods=["POST"]),
        Route(
            f"/apis/{AUTHZ}/v1/namespaces/{{namespace}}/localsubjectaccessreviews",
            local_subject_access_review,
            methods=["POST"],
        ),
        Route(f"/apis/{AUTHN}/v1/selfsubjectreviews", self_subject_review, methods=["POST"]),
        Route(f"/apis/{AUTHN}/v1/tokenreviews", token_review, methods=["POST"]),
        Route(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            token_request,
            methods=["POST"],
        ),
        Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/openid/v1/jwks", openid_jwks, methods=["GET"]),
        Route(f"/apis/{KUMO}/v1/usertokens", user_tokens, methods=["GET", "HEAD", "POST"]),
        Route(
            f"/apis/{KUMO}/v1/usertokens/{{name}}", user_token, methods=["GET", "HEAD", "DELETE"]
        ),
    ]
    # Each one just ahead of the generic resource route that would catch it, not ahead of
    # all routes: a request for a stored resource then tries one or two patterns, not all.
    for route in routes:
        generic = "/api/{rest:path}" if route.path.startswith("/api/") else "/apis/{rest:path}"
        at = next(
            (i for i, r in enumerate(app.router.routes) if getattr(r, "path", None) == generic),
            0,
        )
        app.router.routes.insert(at, route)
