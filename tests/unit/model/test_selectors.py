"""Label and field selectors: Kubernetes' string syntax, LabelSelector objects, matching."""

from __future__ import annotations

import pytest

from kumo.model.base import LabelSelector
from kumo.model.selectors import (
    Requirement,
    SelectorError,
    field_value,
    from_label_selector,
    parse_field_selector,
    parse_label_selector,
    selector_from_map,
)

WEB = {"app": "web", "tier": "frontend", "env": "prod", "replicas": "3"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app=web", (Requirement("app", "=", ("web",)),)),
        ("app==web", (Requirement("app", "=", ("web",)),)),
        ("app!=web", (Requirement("app", "!=", ("web",)),)),
        (" app = web ", (Requirement("app", "=", ("web",)),)),
        ("app=", (Requirement("app", "=", ("",)),)),
        ("env in (prod, staging)", (Requirement("env", "in", ("prod", "staging")),)),
        ("env notin (dev)", (Requirement("env", "notin", ("dev",)),)),
        ("app", (Requirement("app", "exists"),)),
        ("!canary", (Requirement("canary", "!"),)),
        ("replicas>2", (Requirement("replicas", "gt", ("2",)),)),
        ("replicas<2", (Requirement("replicas", "lt", ("2",)),)),
        ("example.com/app=web", (Requirement("example.com/app", "=", ("web",)),)),
        (
            "app=web,tier!=db,!canary",
            (
                Requirement("app", "=", ("web",)),
                Requirement("tier", "!=", ("db",)),
                Requirement("canary", "!"),
            ),
        ),
    ],
)
def test_label_selector_parses(text: str, expected: tuple[Requirement, ...]) -> None:
    assert parse_label_selector(text).requirements == expected


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_label_selector_matches_everything(text: str | None) -> None:
    selector = parse_label_selector(text)
    assert selector.empty
    assert selector.matches({})
    assert selector.matches(WEB)


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("app=web", True),
        ("app=api", False),
        ("app!=api", True),
        ("missing!=x", True),  # != matches objects without the label, as in Kubernetes
        ("env in (prod,staging)", True),
        ("env in (dev)", False),
        ("env notin (dev)", True),
        ("missing notin (dev)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("replicas>2", True),
        ("replicas<3", False),
        ("app>2", False),  # not a number: does not match
        ("app=web,tier=frontend", True),
        ("app=web,tier=backend", False),
    ],
)
def test_label_selector_matches(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(WEB) is matches


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("x in (a,b", "unexpected end"),
        ("a=b,", "trailing ','"),
        ("!", "unexpected end"),
        ("a in ()", "values set can't be empty"),
        ("a notin ()", "values set can't be empty"),
        ("-a=b", "invalid label key '-a'"),
        ("a=-b", "invalid label value: '-b'"),
        ("a b", "found 'b', expected: in, notin"),
        ("a in b", "expected: '('"),
        ("a=b c", "expected: ',' or 'end of string'"),
        ("a,,b", "invalid label key ','"),
        ("a=b=c", "expected: ',' or 'end of string'"),
        ("a>b", "must be an integer"),
        ("a" * 64 + "=b", "no more than 63 characters"),
        ("a=" + "b" * 64, "no more than 63 characters"),
    ],
)
def test_label_selector_errors_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_label_selector(text)
    assert problem in str(caught.value)


def test_selector_string_round_trips() -> None:
    text = "app=web,tier!=db,env in (prod,staging),track notin (canary),team,!legacy,replicas>2"
    selector = parse_label_selector(text)
    assert str(selector) == text
    assert parse_label_selector(str(selector)) == selector


def test_label_selector_object_none_matches_nothing_and_empty_matches_everything() -> None:
    assert not from_label_selector(None).matches(WEB)
    assert not from_label_selector(None).matches({})
    assert from_label_selector(LabelSelector()).matches(WEB)
    assert from_label_selector(LabelSelector()).matches({})


def test_label_selector_object_match_labels_and_expressions() -> None:
    selector = from_label_selector(
        LabelSelector.model_validate(
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                    {"key": "track", "operator": "NotIn", "values": ["canary"]},
                    {"key": "tier", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            }
        )
    )
    assert selector.matches(WEB)
    assert not selector.matches({**WEB, "legacy": "yes"})
    assert not selector.matches({**WEB, "env": "dev"})
    assert not selector.matches({**WEB, "track": "canary"})
    assert not selector.matches({"app": "web", "env": "prod"})  # no tier


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ({"key": "a", "operator": "Like", "values": ["x"]}, "'Like' is not a valid"),
        ({"key": "a", "operator": "In"}, "must be specified when `operator` is 'In'"),
        ({"key": "a", "operator": "NotIn", "values": []}, "must be specified"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "may not be specified"),
    ],
)
def test_label_selector_object_errors(expression: dict[str, object], problem: str) -> None:
    with pytest.raises(SelectorError) as caught:
        from_label_selector(LabelSelector.model_validate({"matchExpressions": [expression]}))
    assert problem in str(caught.value)


def test_service_style_selector_from_a_map() -> None:
    assert selector_from_map({"app": "web"}).matches(WEB)
    assert not selector_from_map({"app": "web", "tier": "db"}).matches(WEB)
    # A Service without a selector selects no pods.
    assert not selector_from_map(None).matches(WEB)
    assert not selector_from_map({}).matches(WEB)


POD = {
    "metadata": {"name": "web-1", "namespace": "prod"},
    "spec": {"nodeName": "node-a", "hostNetwork": False},
    "status": {"phase": "Running"},
}


def test_field_selector_parses_and_matches() -> None:
    selector = parse_field_selector("metadata.name=web-1,status.phase!=Pending")
    assert selector.fields == {"metadata.name", "status.phase"}
    assert selector.matches(POD)
    assert not parse_field_selector("spec.nodeName==node-b").matches(POD)
    assert parse_field_selector("spec.nodeName!=node-b").matches(POD)
    # A missing field is the empty string, so "field=" finds objects without it.
    assert parse_field_selector("status.podIP=").matches(POD)
    assert not parse_field_selector("status.podIP!=").matches(POD)
    assert parse_field_selector(None).matches(POD)
    assert parse_field_selector("").matches(POD)


def test_field_value_renders_like_kubernetes() -> None:
    assert field_value(POD, "spec.hostNetwork") == "false"
    assert field_value(POD, "metadata.name") == "web-1"
    assert field_value(POD, "metadata.name.deeper") == ""
    assert field_value(POD, "nope") == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [("foo", "can't understand 'foo'"), ("a=b,,c", "empty requirement")],
)
def test_field_selector_errors(text: str, problem: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_field_selector(text)
    assert problem in str(caught.value)
