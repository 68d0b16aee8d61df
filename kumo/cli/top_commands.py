"""``kumo top nodes|pods``: CPU and memory in use, from the ``metrics.k8s.io`` API, printed
as kubectl prints it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from kumo.cli.printers import render
from kumo.cli.resource_commands import handles_errors, make_client, namespace_option
from kumo.client import ApiException, Client
from kumo.model.registry import resolve
from kumo.model.validation import QuantityError, cpu_millis, memory_bytes

Obj = dict[str, Any]
METRICS = "/apis/metrics.k8s.io/v1beta1"
MI = 1024 * 1024


def cpu_cell(millis: int) -> str:
    return f"{millis}m"


def memory_cell(byte_count: int) -> str:
    return f"{byte_count // MI}Mi"


def percent(used: int, of: int) -> str:
    return f"{int(used * 100 / of)}%" if of > 0 else "<unknown>"


def _usage(usage: Obj) -> tuple[int, int]:
    try:
        return cpu_millis(usage.get("cpu") or "0"), memory_bytes(usage.get("memory") or "0")
    except QuantityError:
        return 0, 0


def node_rows(metrics: Sequence[Obj], nodes: Sequence[Obj], sort_by: str | None) -> list[list[str]]:
    """One row per node with metrics: usage, and its share of the node's allocatable."""
    allocatable: dict[str, tuple[int, int]] = {}
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name", ""))
        status = node.get("status") or {}
        amounts = status.get("allocatable") or status.get("capacity") or {}
        allocatable[name] = _usage(amounts)
    measured = []
    for item in metrics:
        name = str((item.get("metadata") or {}).get("name", ""))
        measured.append((name, *_usage(item.get("usage") or {})))
    measured = _sorted(measured, sort_by)
    rows = []
    for name, cpu, memory in measured:
        cpu_of, memory_of = allocatable.get(name, (0, 0))
        rows.append(
            [
                name,
                cpu_cell(cpu),
                percent(cpu, cpu_of),
                memory_cell(memory),
                percent(memory, memory_of),
            ]
        )
    return rows


def _sorted(rows: list[tuple[str, int, int]], sort_by: str | None) -> list[tuple[str, int, int]]:
    if sort_by == "cpu":
        return sorted(rows, key=lambda r: (-r[1], r[0]))
    if sort_by == "memory":
        return sorted(rows, key=lambda r: (-r[2], r[0]))
    return sorted(rows, key=lambda r: r[0])


def pod_rows(
    metrics: Sequence[Obj],
    *,
    all_namespaces: bool,
    containers: bool,
    sort_by: str | None,
    total: bool,
) -> list[list[str]]:
    """Rows of pods (or of their containers with ``containers``), summed per pod."""
    entries: list[tuple[str, str, list[tuple[str, int, int]]]] = []
    for item in metrics:
        meta = item.get("metadata") or {}
        per_container = [
            (str(c.get("name", "")), *_usage(c.get("usage") or {}))
            for c in item.get("containers") or []
        ]
        entries.append((str(meta.get("namespace", "")), str(meta.get("name", "")), per_container))
    summed = {
        (ns, name): (sum(c[1] for c in parts), sum(c[2] for c in parts))
        for ns, name, parts in entries
    }
    if sort_by in ("cpu", "memory"):
        index = 0 if sort_by == "cpu" else 1
        entries.sort(key=lambda e: (-summed[(e[0], e[1])][index], e[0], e[1]))
    else:
        entries.sort(key=lambda e: (e[0], e[1]))
    rows: list[list[str]] = []
    for namespace, name, parts in entries:
        prefix = [namespace] if all_namespaces else []
        if containers:
            for container, cpu, memory in sorted(parts):
                rows.append([*prefix, name, container, cpu_cell(cpu), memory_cell(memory)])
        else:
            cpu, memory = summed[(namespace, name)]
            rows.append([*prefix, name, cpu_cell(cpu), memory_cell(memory)])
    if total and rows:
        width = len(rows[0])
        cpu = sum(v[0] for v in summed.values())
        memory = sum(v[1] for v in summed.values())
        rows.append(["" for _ in range(width - 2)] + ["________", "________"])
        rows.append(["" for _ in range(width - 2)] + [cpu_cell(cpu), memory_cell(memory)])
    return rows


def _fetch(client: Client, path: str, params: dict[str, str], *, listing: bool) -> Obj:
    try:
        data: Obj = client.request("GET", METRICS + path, params=params or None).json()
    except ApiException as exc:
        if listing and exc.code == 404:  # the group itself is not served
            click.echo("error: Metrics API not available", err=True)
            sys.exit(1)
        raise
    return data


def _print(headers: list[str], rows: list[list[str]], no_headers: bool) -> None:
    click.echo(render(rows if no_headers else [headers, *rows]))


class _TopGroup(click.Group):
    """Takes kubectl's aliases: ``node``/``no`` and ``pod``/``po``."""

    ALIASES = {"node": "nodes", "no": "nodes", "pod": "pods", "po": "pods"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))


@click.group("top", cls=_TopGroup)
def top() -> None:
    """CPU and memory in use by nodes or pods (kumo top nodes|pods)."""


@top.command("nodes")
@click.argument("name", required=False)
@click.option("-l", "--selector", default=None, help="Label selector, e.g. role=worker.")
@click.option("--sort-by", type=click.Choice(["cpu", "memory"]), default=None)
@click.option("--no-headers", is_flag=True, help="Leave out the header row.")
@click.pass_context
@handles_errors
def top_nodes(
    ctx: click.Context,
    name: str | None,
    selector: str | None,
    sort_by: str | None,
    no_headers: bool,
) -> None:
    """CPU and memory of nodes: usage, and its share of what the node offers pods."""
    client = make_client(ctx)
    node_info = resolve("nodes")[0]
    if name:
        metrics = [_fetch(client, f"/nodes/{name}", {}, listing=False)]
        nodes = [client.get_raw(node_info, name)]
    else:
        params = {"labelSelector": selector} if selector else {}
        metrics = _fetch(client, "/nodes", params, listing=True).get("items") or []
        nodes = client.list_raw(node_info, label_selector=selector).get("items") or []
    if not metrics:
        click.echo("error: metrics not available yet", err=True)
        sys.exit(1)
    headers = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    _print(headers, node_rows(metrics, nodes, sort_by), no_headers)


@top.command("pods")
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Pods of every namespace.")
@click.option("-l", "--selector", default=None, help="Label selector, e.g. app=web.")
@click.option("--containers", is_flag=True, help="One row per container.")
@click.option("--sort-by", type=click.Choice(["cpu", "memory"]), default=None)
@click.option("--sum", "total", is_flag=True, help="Add a row with the total.")
@click.option("--no-headers", is_flag=True, help="Leave out the header row.")
@click.pass_context
@handles_errors
def top_pods(
    ctx: click.Context,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    containers: bool,
    sort_by: str | None,
    total: bool,
    no_headers: bool,
) -> None:
    """CPU and memory of pods (summed over their containers, or per container)."""
    client = make_client(ctx)
    ns = namespace or client.namespace
    if name:
        metrics = [_fetch(client, f"/namespaces/{ns}/pods/{name}", {}, listing=False)]
    else:
        params = {"labelSelector": selector} if selector else {}
        path = "/pods" if all_namespaces else f"/namespaces/{ns}/pods"
        metrics = _fetch(client, path, params, listing=True).get("items") or []
    if not metrics:
        where = "" if all_namespaces else f" in {ns} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    headers = ["NAMESPACE"] if all_namespaces else []
    headers += ["POD", "NAME"] if containers else ["NAME"]
    headers += ["CPU(cores)", "MEMORY(bytes)"]
    rows = pod_rows(
        metrics,
        all_namespaces=all_namespaces,
        containers=containers,
        sort_by=sort_by,
        total=total,
    )
    _print(headers, rows, no_headers)


def register(group: click.Group) -> None:
    group.add_command(top)
