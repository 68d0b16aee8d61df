"""The pure parts of pods/log and pods/exec: parameter checks, container and node
selection, the exit-status protocol and the CLI's option handling."""

from __future__ import annotations

import datetime
from typing import Any

import click
import pytest

from kumo.cli import pod_commands
from kumo.client import ClientConfig
from kumo.node import server as node_server
from kumo.node.runtime import LogLine, LogStream
from kumo.platform.api import nodeproxy
from kumo.platform.api.errors import ApiError


def pod(
    containers: list[str], init: list[str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": name, "image": "busybox"} for name in containers]
    }
    if init:
        spec["initContainers"] = [{"name": name, "image": "busybox"} for name in init]
    return {"metadata": {"name": "web", "annotations": annotations or {}}, "spec": spec}


def error_of(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value


# --------------------------------------------------------------------------- shared names


def test_both_sides_agree_on_the_credentials_and_protocols() -> None:
    assert nodeproxy.CLIENT_CERT_NAME == node_server.APISERVER_CLIENT_NAME
    assert nodeproxy.CHANNEL_PROTOCOLS == node_server.CHANNEL_PROTOCOLS
    assert node_server.CHANNEL_PROTOCOLS[0] == "v5.channel.k8s.io"


# --------------------------------------------------------------------------- containers


def test_the_only_container_is_the_default() -> None:
    assert nodeproxy.choose_container(pod(["app"]), None) == "app"
    assert nodeproxy.choose_container(pod(["app"]), "app") == "app"


def test_the_annotation_names_the_default_container() -> None:
    annotated = pod(
        ["web", "sidecar"], annotations={nodeproxy.DEFAULT_CONTAINER_ANNOTATION: "sidecar"}
    )
    assert nodeproxy.choose_container(annotated, None) == "sidecar"
    assert nodeproxy.choose_container(annotated, "web") == "web"


def test_several_containers_need_a_name() -> None:
    error = error_of(nodeproxy.choose_container, pod(["web", "sidecar"], ["setup"]), None)
    assert error.code == 400
    assert error.message == (
        "a container name must be specified for pod web, choose one of: [web sidecar]"
        " or one of the init containers: [setup]"
    )


def test_init_containers_are_valid_and_others_are_not() -> None:
    assert nodeproxy.choose_container(pod(["web"], ["setup"]), "setup") == "setup"
    error = error_of(nodeproxy.choose_container, pod(["web"]), "db")
    assert (error.code, error.message) == (400, "container db is not valid for pod web")


# --------------------------------------------------------------------------- nodes


def node(addresses: list[tuple[str, str]], port: int | None) -> dict[str, Any]:
    status: dict[str, Any] = {"addresses": [{"type": t, "address": a} for t, a in addresses]}
    if port is not None:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    return {"metadata": {"name": "n1"}, "status": status}


def test_node_endpoint_prefers_the_internal_ip() -> None:
    found = nodeproxy.node_endpoint(
        node([("Hostname", "n1"), ("ExternalIP", "10.0.0.9"), ("InternalIP", "10.0.0.2")], 10250)
    )
    assert found == ("10.0.0.2", 10250)
    assert nodeproxy.node_endpoint(node([("Hostname", "n1.local")], 7)) == ("n1.local", 7)


@pytest.mark.parametrize(
    ("addresses", "port", "words"),
    [
        ([], 10250, "has no address"),
        ([("InternalIP", "10.0.0.2")], None, "does not publish the port"),
        ([("InternalIP", "10.0.0.2")], 0, "does not publish the port"),
    ],
)
def test_a_node_without_an_endpoint_is_unavailable(
    addresses: list[tuple[str, str]], port: int | None, words: str
) -> None:
    error = error_of(nodeproxy.node_endpoint, node(addresses, port))
    assert error.code == 503
    assert words in error.message


# --------------------------------------------------------------------------- log options


def test_log_params_are_normalized_for_the_agent() -> None:
    params = nodeproxy.log_params(
        {
            "follow": "true",
            "previous": "1",
            "timestamps": "false",
            "tailLines": "0",
            "limitBytes": "10",
            "sinceTime": "2024-05-01T12:00:00+02:00",
            "container": "ignored here",
        },
        "web",
    )
    assert params == {
        "follow": "true",
        "previous": "true",
        "tailLines": "0",
        "limitBytes": "10",
        "sinceTime": "2024-05-01T10:00:00Z",
    }


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"tailLines": "-1"}, 422, "tailLines: Invalid value: -1"),
        ({"sinceSeconds": "0"}, 422, "sinceSeconds: Invalid value: 0"),
        ({"limitBytes": "0"}, 422, "limitBytes"),
        ({"sinceSeconds": "5", "sinceTime": "2024-01-01T00:00:00Z"}, 422, "at most one of"),
        ({"tailLines": "ten"}, 400, "tailLines: must be an integer"),
        ({"follow": "maybe"}, 400, "follow: must be true or false"),
        ({"sinceTime": "yesterday"}, 400, "not an RFC 3339 time"),
        ({"sinceTime": "2024-01-01T00:00:00"}, 400, "needs a time zone"),
    ],
)
def test_bad_log_params(params: dict[str, str], code: int, words: str) -> None:
    error = error_of(nodeproxy.log_params, params, "web")
    assert error.code == code
    assert words in error.message
    if code == 422:
        assert error.message.startswith('PodLogOptions "web" is invalid')


def test_the_node_checks_log_options_the_same_way() -> None:
    options = node_server.LogOptions.from_query(
        {"follow": ["true"], "tailLines": ["3"], "sinceSeconds": ["60"], "limitBytes": ["5"]}
    )
    assert (options.follow, options.tail_lines, options.limit_bytes) == (True, 3, 5)
    now = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    assert options.since(now) == now - datetime.timedelta(minutes=1)
    assert node_server.LogOptions.from_query({}).since(now) is None
    for bad in (
        {"tailLines": ["-1"]},
        {"sinceSeconds": ["0"]},
        {"sinceSeconds": ["1"], "sinceTime": ["2024-01-01T00:00:00Z"]},
        {"previous": ["perhaps"]},
        {"sinceTime": ["2024-01-01"]},
    ):
        with pytest.raises(node_server.LogOptionsError):
            node_server.LogOptions.from_query(bad)


def test_log_lines_with_and_without_timestamps() -> None:
    when = datetime.datetime(
        2024, 5, 1, 14, 0, 1, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    line = LogLine(when, LogStream.STDERR, "hello")
    assert node_server.format_log_line(line, timestamps=False) == b"hello\n"
    assert (
        node_server.format_log_line(line, timestamps=True)
        == b"2024-05-01T12:00:01.250000000Z hello\n"
    )


# --------------------------------------------------------------------------- exec


def test_exec_params() -> None:
    request = nodeproxy.exec_params(
        [
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo a&b"),
            ("container", "app"),
            ("stdin", "true"),
            ("stdout", "true"),
            ("tty", "1"),
        ]
    )
    assert request.command == ("sh", "-c", "echo a&b")
    assert (request.container, request.stdin, request.stdout, request.stderr, request.tty) == (
        "app",
        True,
        True,
        False,
        True,
    )
    query = request.query("app", "uid-1")
    assert query == (
        "command=sh&command=-c&command=echo+a%26b&stdin=true&stdout=true&stderr=false"
        "&tty=true&podUID=uid-1"
    )


def test_exec_needs_a_command_and_a_stream() -> None:
    error = error_of(nodeproxy.exec_params, [("stdout", "true")])
    assert (error.code, error.message) == (
        400,
        "you must specify at least one command for the container",
    )
    error = error_of(nodeproxy.exec_params, [("command", "ls")])
    assert error.message == "you must specify at least one of stdin, stdout, stderr"


@pytest.mark.parametrize("code", [0, 1, 3, 126, 127, 255])
def test_exit_status_round_trip(code: int) -> None:
    status = node_server.exit_status(code, ["sh", "-c", "exit"])
    assert node_server.exit_code_of(status) == code
    assert status["status"] == ("Success" if code == 0 else "Failure")


def test_a_failure_without_exit_code_has_none() -> None:
    failure = node_server.status_body(500, "exec failed: boom")
    assert node_server.exit_code_of(failure) is None
    assert node_server.exit_code_of({"status": "Failure", "reason": "NonZeroExitCode"}) is None


def test_agent_errors_become_api_errors() -> None:
    body = b'{"kind":"Status","message":"container \\"x\\" is not running","reason":"BadRequest","code":400}'
    error = nodeproxy._from_agent(400, body, "n1")
    assert (error.code, error.reason, error.message) == (
        400,
        "BadRequest",
        'container "x" is not running',
    )
    refused = nodeproxy._from_agent(403, b'{"message":"Forbidden: client"}', "n1")
    assert refused.code == 503
    assert 'the agent of node "n1" refused the API server' in refused.message
    garbled = nodeproxy._from_agent(502, b"<html>bad gateway</html>", "n1")
    assert (garbled.code, garbled.message) == (502, "<html>bad gateway</html>")


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("1500ms", 2), ("1ns", 1)],
)
def test_since_durations(text: str, seconds: int) -> None:
    assert pod_commands.since_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "5 m", "m5", "1x", "0s", "-5s"])
def test_bad_since_durations(text: str) -> None:
    with pytest.raises(ValueError):
        pod_commands.since_seconds(text)


def test_log_query_of_the_cli_options() -> None:
    query = pod_commands.log_query(
        container="app",
        follow=True,
        tail=20,
        since="2m",
        since_time=None,
        previous=True,
        timestamps=True,
        limit_bytes=None,
    )
    assert query == {
        "container": "app",
        "follow": "true",
        "previous": "true",
        "timestamps": "true",
        "tailLines": "20",
        "sinceSeconds": "120",
    }
    everything = pod_commands.log_query(
        container=None,
        follow=False,
        tail=-1,
        since=None,
        since_time="2024-05-01T10:00:00Z",
        previous=False,
        timestamps=False,
        limit_bytes=100,
    )
    assert everything == {"sinceTime": "2024-05-01T10:00:00Z", "limitBytes": "100"}
    with pytest.raises(click.UsageError):
        pod_commands.log_query(
            container=None,
            follow=False,
            tail=-1,
            since="1m",
            since_time="2024-05-01T10:00:00Z",
            previous=False,
            timestamps=False,
            limit_bytes=None,
        )


def test_exec_url_and_pod_names() -> None:
    config = ClientConfig(server="https://127.0.0.1:7443", token="t")
    url = pod_commands.exec_url(
        config, "team-a", "web", ("sh", "-c", "echo hi"), container=None, stdin=True, tty=True
    )
    assert url == (
        "wss://127.0.0.1:7443/api/v1/namespaces/team-a/pods/web/exec?command=sh&command=-c"
        "&command=echo+hi&stdin=true&stdout=true&stderr=false&tty=true"
    )
    plain = ClientConfig(server="http://localhost:8080")
    assert pod_commands.exec_url(
        plain, "d", "p", ("ls",), container="c", stdin=False, tty=False
    ).startswith("ws://localhost:8080/api/v1/namespaces/d/pods/p/exec?command=ls&container=c")
    assert pod_commands.pod_name("web") == "web"
    assert pod_commands.pod_name("pod/web") == "web"
    assert pod_commands.pod_name("pods/web") == "web"
    with pytest.raises(click.UsageError):
        pod_commands.pod_name("deploy/web")
