"""API errors as Kubernetes ``Status`` bodies.

Handlers raise ``ApiError``; the app turns it into a JSON ``kind: Status`` response with the
same code. Nothing else should reach the client as an error.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from kumo.model.registry import ResourceInfo


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.code,
            media_type="application/json",
            headers=self.headers,
        )


def _details(info: ResourceInfo | None, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if info is not None:
        details["group"] = info.group
        details["kind"] = info.plural
    return details


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> ApiError:
    return ApiError(
        401, "Unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="kumo"'}
    )


def forbidden(message: str, info: ResourceInfo | None = None, name: str | None = None) -> ApiError:
    return ApiError(403, "Forbidden", message, details=_details(info, name) or None)


def not_found(info: ResourceInfo | None, name: str) -> ApiError:
    what = info.group_resource if info else "resource"
    return ApiError(404, "NotFound", f'{what} "{name}" not found', details=_details(info, name))


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")


def method_not_allowed(method: str, what: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource: {method} {what}",
    )


def already_exists(info: ResourceInfo, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{info.group_resource} "{name}" already exists',
        details=_details(info, name),
    )


def conflict(info: ResourceInfo, name: str, why: str | None = None) -> ApiError:
    why = (
        why
        or "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {info.group_resource} "{name}": {why}',
        details=_details(info, name),
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit} bytes"
    )


def unsupported_media_type(content_type: str, allowed: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type or 'none'}); accepted media types include: {', '.join(allowed)}",
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid, worded like Kubernetes: 'Deployment.apps "web" is invalid: spec.replicas: ...'."""
    qualified = f"{kind}.{group}" if group else kind
    shown = "; ".join(f"{field}: {problem}" if field else problem for field, problem in causes[:10])
    if len(causes) > 10:
        shown += f"; and {len(causes) - 10} more"
    message = (
        f'{qualified} "{name}" is invalid: {shown}'
        if len(causes) == 1
        else f'{qualified} "{name}" is invalid: [{shown}]'
    )
    return ApiError(
        422,
        "Invalid",
        message,
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": _cause_reason(problem), "message": problem, "field": field}
                for field, problem in causes
            ],
        },
    )


def _cause_reason(problem: str) -> str:
    head = problem.split(":", 1)[0]
    return {
        "Required value": "FieldValueRequired",
        "Invalid value": "FieldValueInvalid",
        "Unsupported value": "FieldValueNotSupported",
        "Duplicate value": "FieldValueDuplicate",
        "Forbidden": "FieldValueForbidden",
        "Not found": "FieldValueNotFound",
        "Too long": "FieldValueTooLong",
    }.get(head, "FieldValueInvalid")


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def too_many_requests(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        message,
        details={"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )
