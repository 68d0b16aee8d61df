"""Error responses, header classification, options, and the metrics exposition (pure
logic)."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kumo.platform.gateway import GatewayOptions
from kumo.platform.gateway.metrics import LATENCY_BUCKETS, GatewayMetrics
from kumo.platform.gateway.wire import (
    CONNECTION,
    FORWARDED_FOR,
    FORWARDED_OTHER,
    HOP,
    HOST,
    NORMAL,
    TRANSFER_ENCODING,
    UPGRADE,
    connection_tokens,
    error_response,
    header_kind,
)


def split(response: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
    return status, headers, body


def test_plain_text_error() -> None:
    status, headers, body = split(
        error_response(503, "no ready endpoints for service a/b", "no-ready-endpoints")
    )
    assert status == b"HTTP/1.1 503 Service Unavailable"
    assert body == b"no ready endpoints for service a/b\n"
    assert int(headers[b"content-length"]) == len(body)
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"kumo-gateway-error"] == b"no-ready-endpoints"
    assert b"connection" not in headers


def test_json_error_is_a_status_object() -> None:
    status, headers, body = split(
        error_response(404, "service a/b not found", "not-found", json_body=True, keep_alive=False)
    )
    assert status == b"HTTP/1.1 404 Not Found"
    assert headers[b"connection"] == b"close"
    document = json.loads(body)
    assert document == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "service a/b not found",
        "reason": "NotFound",
        "details": {"kind": "not-found"},
        "code": 404,
    }


def test_head_only_error_and_http10_keep_alive() -> None:
    response = error_response(504, "slow", "timeout", head_only=True, http10=True)
    status, headers, body = split(response)
    assert status == b"HTTP/1.1 504 Gateway Timeout"
    assert body == b""
    assert int(headers[b"content-length"]) == len(b"slow\n")
    assert headers[b"connection"] == b"keep-alive"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (b"Content-Type", NORMAL),
        (b"HOST", HOST),
        (b"Connection", CONNECTION),
        (b"transfer-encoding", TRANSFER_ENCODING),
        (b"Keep-Alive", HOP),
        (b"Proxy-Authorization", HOP),
        (b"TE", HOP),
        (b"Upgrade", UPGRADE),
        (b"X-Forwarded-For", FORWARDED_FOR),
        (b"x-forwarded-proto", FORWARDED_OTHER),
        (b"X-Forwarded-Prefix", FORWARDED_OTHER),
    ],
)
def test_header_kinds(name: bytes, kind: int) -> None:
    assert header_kind(name) == kind
    assert header_kind(name) == kind  # cached


def test_connection_tokens() -> None:
    assert connection_tokens(b"keep-alive, X-Trace ,  Upgrade") == {
        b"keep-alive",
        b"x-trace",
        b"upgrade",
    }


def test_options() -> None:
    options = GatewayOptions(addresses="0.0.0.0", domains=(".apps.example.", "localhost"))  # type: ignore[arg-type]
    assert options.addresses == ("0.0.0.0",)
    assert options.domains == ("apps.example", "localhost")
    assert GatewayOptions.from_options(port=1).port == 1
    with pytest.raises(TypeError, match="unknown gateway option"):
        GatewayOptions.from_options(prot=1)


def test_metrics_exposition() -> None:
    metrics = GatewayMetrics()
    stats = metrics.stats_for("shop", "web")
    stats.observe(b"GET", 200, 0.004)
    stats.observe(b"GET", 200, 0.2)
    stats.observe(b"POST", 502, 3.0)
    stats.observe(b"GET", 200, 100.0)
    stats.in_flight = 2
    stats.ejections = 1
    stats.retries = 3
    metrics.unrouted.observe(b"GET", 404, 0.0001)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    web = (("namespace", "shop"), ("service", "web"))

    def value(name: str, *extra: tuple[str, str]) -> float:
        return samples[(name, tuple(sorted(web + extra)))]

    assert value("kumo_gateway_requests_total", ("method", "GET"), ("code", "200")) == 3
    assert value("kumo_gateway_requests_total", ("method", "POST"), ("code", "502")) == 1
    assert value("kumo_gateway_request_duration_seconds_count") == 4
    assert value("kumo_gateway_request_duration_seconds_sum") == pytest.approx(103.204)
    assert value("kumo_gateway_request_duration_seconds_bucket", ("le", "0.005")) == 1
    assert value("kumo_gateway_request_duration_seconds_bucket", ("le", "0.25")) == 2
    assert value("kumo_gateway_request_duration_seconds_bucket", ("le", "5.0")) == 3
    assert value("kumo_gateway_request_duration_seconds_bucket", ("le", "60.0")) == 3
    assert value("kumo_gateway_request_duration_seconds_bucket", ("le", "+Inf")) == 4
    assert value("kumo_gateway_requests_in_flight") == 2
    assert value("kumo_gateway_upstream_ejections_total") == 1
    assert value("kumo_gateway_retries_total") == 3
    unrouted = (("code", "404"), ("method", "GET"), ("namespace", ""), ("service", ""))
    assert samples[("kumo_gateway_requests_total", unrouted)] == 1
    assert len(LATENCY_BUCKETS) + 1 == len(stats.buckets)

    metrics.drop("shop", "web")
    assert ("shop", "web") in metrics.services  # still in flight
    stats.in_flight = 0
    metrics.drop("shop", "web")
    assert ("shop", "web") not in metrics.services
