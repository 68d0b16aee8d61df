"""HTTP/1.1 bits the proxy needs: hop-by-hop headers, status lines, and the gateway's own
error responses (plain text, or a Kubernetes-style ``Status`` when the client accepts JSON)."""

from __future__ import annotations

import http
import json

# Headers that describe one connection, not the message (RFC 9110 section 7.6.1); never
# forwarded. Transfer-Encoding is re-applied by the proxy when it frames a body itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Set by the gateway; a client's own values are replaced (X-Forwarded-For is appended to).
FORWARDED = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix"}
)

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})

REASONS: dict[int, bytes] = {status.value: status.phrase.encode() for status in http.HTTPStatus}
REASONS[499] = b"Client Closed Request"

# The gateway's own errors carry this header, so clients (and tests) can tell them from an
# upstream's answer with the same status code.
ERROR_HEADER = b"Kumo-Gateway-Error"

_STATUS_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "Timeout",
    431: "RequestHeaderFieldsTooLarge",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_line(code: int, reason: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (code, reason or REASONS.get(code, b"Unknown"))


STATUS_LINES: dict[int, bytes] = {code: status_line(code) for code in REASONS}


def status_line_for(code: int) -> bytes:
    """The status line of a code outside the standard ones (still cached)."""
    line = status_line(code, b"Status")
    if len(STATUS_LINES) < 1000:
        STATUS_LINES[code] = line
    return line


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased option names of a Connection header value."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def error_response(
    code: int,
    message: str,
    kind: str,
    *,
    json_body: bool = False,
    keep_alive: bool = True,
    http10: bool = False,
    head_only: bool = False,
) -> bytes:
    """A complete response for an error the gateway itself answers (``kind`` is a short
    machine-readable slug such as ``no-ready-endpoints``)."""
    if json_body:
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": _STATUS_REASONS.get(code, "InternalError"),
                "details": {"kind": kind},
                "code": code,
            }
        ).encode()
        content_type = b"application/json"
    else:
        body = message.encode() + b"\n"
        content_type = b"text/plain; charset=utf-8"
    if keep_alive:
        connection = b"Connection: keep-alive\r\n" if http10 else b""
    else:
        connection = b"Connection: close\r\n"
    head = b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s: %s\r\n%s\r\n" % (
        status_line(code),
        content_type,
        len(body),
        ERROR_HEADER,
        kind.encode(),
        connection,
    )
    return head if head_only else head + body


# What the proxy does with a header, by name; computed once per distinct spelling of a name
# (clients send the same spellings over and over), so the request path skips ``lower()``.
NORMAL = 0
HOP = 1  # hop-by-hop (but not one of the kinds below)
UPGRADE = 2
FORWARDED_FOR = 3
FORWARDED_OTHER = 4
HOST = 5
CONNECTION = 6
CONTENT_LENGTH = 7
TRANSFER_ENCODING = 8
ACCEPT = 9

_SPECIAL = {
    b"upgrade": UPGRADE,
    b"x-forwarded-for": FORWARDED_FOR,
    b"host": HOST,
    b"connection": CONNECTION,
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"accept": ACCEPT,
}
HEADER_KINDS: dict[bytes, int] = {}


def header_kind(name: bytes) -> int:
    kind = HEADER_KINDS.get(name)
    if kind is not None:
        return kind
    lower = name.lower()
    kind = _SPECIAL.get(lower)
    if kind is None:
        if lower in HOP_BY_HOP:
            kind = HOP
        elif lower in FORWARDED:
            kind = FORWARDED_OTHER
        else:
            kind = NORMAL
    if len(HEADER_KINDS) < 4096:
        HEADER_KINDS[name] = kind
    return kind
