"""Kubernetes' rules for names, label keys and values, and quantities.

Every check returns a list of problems (empty when valid), worded as Kubernetes words them.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def dns1123_label(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        problems.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters"
            " or '-', and must start and end with an alphanumeric character"
            " (e.g. 'my-name',  or '123-abc')"
        )
    return problems


def dns1123_subdomain(value: str) -> list[str]:
    problems = []
    if len(value) > 253:
        problems.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        problems.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"
            " characters, '-' or '.', and must start and end with an alphanumeric character"
            " (e.g. 'example.com')"
        )
    return problems


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: optional DNS subdomain prefix, '/', and a name."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        problems = [f"prefix part {p}" for p in dns1123_subdomain(prefix)]
        if problems:
            return problems
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and"
            " must start and end with an alphanumeric character, with an optional DNS"
            " subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    if len(name) > 63:
        return ["name part must be no more than 63 characters"]
    if not _QUALIFIED_NAME.match(name):
        return [
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must"
            " start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',"
            "  or '123-abc')"
        ]
    return []


def label_value(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not _LABEL_VALUE.match(value):
        return [
            "a valid label must be an empty string or consist of alphanumeric characters,"
            " '-', '_' or '.', and must start and end with an alphanumeric character"
        ]
    return []


def env_var_name(value: str) -> list[str]:
    if not _ENV_VAR_NAME.match(value):
        return [
            "a valid environment variable name must consist of alphabetic characters, digits,"
            " '_', '-', or '.', and must not start with a digit"
        ]
    return []


def port_name(value: str) -> list[str]:
    if len(value) > 15:
        return ["must be no more than 15 characters"]
    if not _IANA_SVC_NAME.match(value) or "--" in value or not re.search("[a-z]", value):
        return [
            "must contain only lowercase alphanumeric characters or '-', contain at least one"
            " letter, and not start or end with '-'"
        ]
    return []


def port_number(value: int) -> list[str]:
    if not 1 <= value <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def labels(path: str, values: dict[str, str] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in (values or {}).items():
        out.extend((f"{path}", f"Invalid value: {key!r}: {p}") for p in qualified_name(key))
        out.extend((f"{path}", f"Invalid value: {value!r}: {p}") for p in label_value(value))
    return out


# ---- quantities -------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


class QuantityError(ValueError):
    pass


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("500m", "128Mi", "1e3", 2) as an exact decimal."""
    if isinstance(value, bool):
        raise QuantityError(
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value)
    if not match or match.group(1) in {"", ".", "+", "-"}:
        raise QuantityError(
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    try:
        number = Decimal(match.group(1) + (match.group(2) or ""))
    except InvalidOperation as exc:
        raise QuantityError(f"invalid quantity {value!r}") from exc
    suffix = match.group(3) or ""
    try:
        if suffix in _BINARY:
            return number * _BINARY[suffix]
        return number * _DECIMAL[suffix]
    except ArithmeticError as exc:  # decimal.Overflow: far past any real quantity
        raise QuantityError(f"quantity {value!r} is too large") from exc


def quantity_problems(value: str | int | float) -> list[str]:
    try:
        amount = parse_quantity(value)
    except QuantityError as exc:
        return [str(exc)]
    if amount < 0:
        return ["must be greater than or equal to 0"]
    return []


def cpu_millis(value: str | int | float | None) -> int:
    """CPU quantity in millicores, rounded up as Kubernetes does."""
    if value is None:
        return 0
    amount = parse_quantity(value) * 1000
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(value: str | int | float | None) -> int:
    if value is None:
        return 0
    amount = parse_quantity(value)
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def format_cpu(millis: int) -> str:
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def format_memory(count: int) -> str:
    for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)
