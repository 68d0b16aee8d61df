"""Kubernetes' rules for names, label keys and values, ports and quantities."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kumo.model.validation import (
    QuantityError,
    cpu_millis,
    dns1123_label,
    dns1123_subdomain,
    env_var_name,
    format_cpu,
    format_memory,
    label_value,
    labels,
    memory_bytes,
    parse_quantity,
    port_name,
    port_number,
    qualified_name,
    quantity_problems,
)


@pytest.mark.parametrize("name", ["a", "my-name", "123-abc", "a" * 63, "0"])
def test_valid_dns1123_labels(name: str) -> None:
    assert dns1123_label(name) == []


@pytest.mark.parametrize("name", ["", "My-Name", "-a", "a-", "a.b", "a_b", "ü"])
def test_invalid_dns1123_labels(name: str) -> None:
    assert any("RFC 1123 label" in p for p in dns1123_label(name))


def test_dns1123_label_length_limit() -> None:
    assert dns1123_label("a" * 64) == ["must be no more than 63 characters"]


@pytest.mark.parametrize("name", ["example.com", "a.b-c.d", "web", "a" * 253])
def test_valid_dns1123_subdomains(name: str) -> None:
    assert dns1123_subdomain(name) == []


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "A.b", "a_b"])
def test_invalid_dns1123_subdomains(name: str) -> None:
    assert any("RFC 1123 subdomain" in p for p in dns1123_subdomain(name))


def test_dns1123_subdomain_length_limit() -> None:
    assert "must be no more than 253 characters" in dns1123_subdomain("a" * 254)


@pytest.mark.parametrize(
    "key",
    ["app", "App_Name.v1", "example.com/app", "kubernetes.io/os", "a" * 63, "x/" + "a" * 63],
)
def test_valid_label_keys(key: str) -> None:
    assert qualified_name(key) == []


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "name part must be non-empty"),
        ("/a", "prefix part must be non-empty"),
        ("a/", "name part must be non-empty"),
        ("a/b/c", "a qualified name must consist of"),
        ("-a", "name part must consist of"),
        ("a" * 64, "name part must be no more than 63 characters"),
        ("Example.com/a", "prefix part a lowercase RFC 1123 subdomain"),
    ],
)
def test_invalid_label_keys(key: str, problem: str) -> None:
    problems = qualified_name(key)
    assert problems and problem in problems[0]


@pytest.mark.parametrize("value", ["", "web", "v1.2.3", "A_b-c", "a" * 63])
def test_valid_label_values(value: str) -> None:
    assert label_value(value) == []


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "a/b", "a" * 64])
def test_invalid_label_values(value: str) -> None:
    assert label_value(value)


def test_labels_names_the_field_and_the_bad_key_or_value() -> None:
    problems = labels("metadata.labels", {"ok": "fine", "bad key": "x", "k": "-v"})
    assert [path for path, _ in problems] == ["metadata.labels", "metadata.labels"]
    assert "'bad key'" in problems[0][1]
    assert "'-v'" in problems[1][1]


def test_env_var_names() -> None:
    assert env_var_name("PATH") == []
    assert env_var_name("my.var-name_1") == []
    assert env_var_name("1ABC")
    assert env_var_name("A B")


def test_port_names_and_numbers() -> None:
    assert port_name("http") == []
    assert port_name("h2c-web") == []
    assert port_name("80")  # needs a letter
    assert port_name("a--b")
    assert port_name("-http")
    assert port_name("a" * 16)
    assert port_number(1) == [] and port_number(65535) == []
    assert port_number(0) and port_number(65536)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        ("1.5", Decimal("1.5")),
        (".5", Decimal("0.5")),
        ("128Mi", Decimal(128 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1Ei", Decimal(2**60)),
        ("1k", Decimal(1000)),
        ("2M", Decimal(2_000_000)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("100n", Decimal("0.0000001")),
        ("+3", Decimal(3)),
        (2, Decimal(2)),
        (0.25, Decimal("0.25")),
    ],
)
def test_quantities_parse_exactly(text: str | int | float, value: Decimal) -> None:
    assert parse_quantity(text) == value
    assert quantity_problems(text) == []


@pytest.mark.parametrize("text", ["", "abc", "1K", "Mi", "1.2.3", "1e", "12Mx", " 1", "1 "])
def test_malformed_quantities_are_rejected(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)
    assert quantity_problems(text)


def test_bool_is_not_a_quantity() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(True)


def test_negative_quantities_are_reported() -> None:
    assert quantity_problems("-1") == ["must be greater than or equal to 0"]


def test_cpu_and_memory_conversions() -> None:
    assert cpu_millis("250m") == 250
    assert cpu_millis("2") == 2000
    assert cpu_millis("0.0001") == 1  # rounded up, as Kubernetes does
    assert cpu_millis(None) == 0
    assert memory_bytes("1Mi") == 2**20
    assert memory_bytes("1M") == 10**6
    assert memory_bytes(None) == 0
    assert format_cpu(1500) == "1500m"
    assert format_cpu(2000) == "2"
    assert format_memory(3 * 2**20) == "3Mi"
    assert format_memory(2**30) == "1Gi"
    assert format_memory(1000) == "1000"
