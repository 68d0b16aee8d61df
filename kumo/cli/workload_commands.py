"""Workload verbs, as kubectl has them: ``rollout status|history|undo|pause|resume|restart``,
``scale``, ``cordon``, ``uncordon``, ``drain`` and ``events``."""

from __future__ import annotations

import datetime
import re
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click
import httpx

from kumo.cli import printers
from kumo.cli.resource_commands import (
    F,
    create,
    handles_errors,
    make_client,
    namespace_option,
    resolve_kind,
)
from kumo.client import ApiException, Client
from kumo.client.client import JSON_PATCH
from kumo.model.registry import ResourceInfo, resolve
from kumo.platform.controllers import deployment_util as util
from kumo.platform.controllers.controller_utils import (
    controller_ref,
    is_pod_terminal,
    parse_time,
)

Obj = dict[str, Any]


def die(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def parse_duration(text: str) -> float:
    """Go-style durations as kubectl takes them: ``90s``, ``5m``, ``1h30m``, ``250ms``; a bare
    number is seconds; 0 means no limit."""
    value = text.strip()
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        pass
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    position = 0
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        if match.start() != position:
            break
        total += float(match.group(1)) * units[match.group(2)]
        position = match.end()
    if position != len(value):
        raise click.BadParameter(f"invalid duration {text!r}; use e.g. 30s, 5m, 1h")
    return total


def target(
    args: tuple[str, ...], allowed: tuple[str, ...] | None = None
) -> tuple[ResourceInfo, str]:
    """``KIND/NAME`` or ``KIND NAME`` -> (kind, name)."""
    if len(args) == 1 and "/" in args[0]:
        kind_text, _, name = args[0].partition("/")
    elif len(args) == 2:
        kind_text, name = args
    else:
        raise click.UsageError("expected KIND/NAME (or KIND NAME), e.g. deployment/web")
    if not name:
        raise click.UsageError("expected KIND/NAME, e.g. deployment/web")
    info = resolve_kind(kind_text)
    if allowed is not None and info.kind not in allowed:
        kinds = ", ".join(sorted(f"{a.lower()}s" for a in allowed))
        die(f'{info.group_resource} "{name}": this command supports only {kinds}')
    return info, name


def target_options(func: F) -> F:
    """The ``KIND/NAME`` (or ``KIND NAME``) arguments and ``-n/--namespace`` of a verb that
    acts on named objects (read by ``target``)."""
    return click.argument("args", nargs=-1, required=True)(namespace_option(func))


def qualified(info: ResourceInfo, name: str) -> str:
    return f"{info.kind_group}/{name}"


def owned_sets(client: Client, deployment: Obj) -> list[Obj]:
    """The ReplicaSets a Deployment controls."""
    rs_info = resolve("replicasets.apps")[0]
    meta = deployment.get("metadata") or {}
    items, _ = client.list_all_raw(rs_info, meta.get("namespace"))
    uid = meta.get("uid")
    return [rs for rs in items if (controller_ref(rs) or {}).get("uid") == uid]


# ---- rollout -------------------------------------------------------------------------------


@click.group("rollout")
def rollout() -> None:
    """Manage a Deployment's rollout: status, history, undo, pause, resume, restart."""


@rollout.command("status")
@target_options
@click.option(
    "-w",
    "--watch",
    type=click.BOOL,
    default=True,
    is_flag=False,
    flag_value=True,
    help="Wait until the rollout finishes (--watch=false: print the status once).",
)
@click.option("--timeout", default="0s", help="Give up after this long (e.g. 5m); 0: never.")
@click.option("--revision", type=int, default=0, help="Insist on this revision being rolled out.")
@click.pass_context
@handles_errors
def rollout_status(
    ctx: click.Context,
    args: tuple[str, ...],
    namespace: str | None,
    watch: bool,
    timeout: str,
    revision: int,
) -> None:
    """Show a rollout's progress until it finishes (exit 0) or misses its progress deadline
    (exit 1): kumo rollout status deployment/web."""
    client = make_client(ctx)
    info, name = target(args, ("Deployment",))
    ns = namespace or client.namespace
    limit = parse_duration(timeout)
    deadline = time.monotonic() + limit if limit > 0 else None
    deployment = client.get_raw(info, name, ns)
    if revision > 0:
        current = util.revision(deployment)
        if current != revision:
            die(f"desired revision ({revision}) is different from the running revision ({current})")
    last = ""

    def show(obj: Obj) -> bool:
        nonlocal last
        state = util.rollout_state(obj)
        if state.failed:
            die(state.message)
        if state.message != last:
            click.echo(state.message)
            last = state.message
        return state.done

    if show(deployment) or not watch:
        return
    version = str(deployment["metadata"].get("resourceVersion", ""))
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            die("timed out waiting for the condition")
        window = 60 if remaining is None else max(1, min(60, int(remaining + 0.999)))
        try:
            for event in client.watch_raw(
                info,
                ns,
                field_selector=f"metadata.name={name}",
                resource_version=version,
                timeout_seconds=window,
            ):
                obj = event.object
                version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                if event.type == "DELETED":
                    die(f'deployment "{name}" was deleted')
                if event.type in ("ADDED", "MODIFIED") and show(obj):
                    return
        except ApiException as exc:
            if not exc.gone:
                raise
            deployment = client.get_raw(info, name, ns)
            version = str(deployment["metadata"].get("resourceVersion", ""))
            if show(deployment):
                return
        except httpx.RemoteProtocolError:
            time.sleep(0.5)


def _describe_template(template: Obj) -> list[str]:
    meta = template.get("metadata") or {}
    lines = ["Pod Template:"]
    labels = meta.get("labels") or {}
    lines.append(f"  Labels:\t{_pairs(labels)}")
    notes = meta.get("annotations") or {}
    if notes:
        lines.append(f"  Annotations:\t{_pairs(notes)}")
    lines.append("  Containers:")
    for container in (template.get("spec") or {}).get("containers") or []:
        lines.append(f"   {container.get('name')}:")
        lines.append(f"    Image:\t{container.get('image', '<none>')}")
        ports = container.get("ports") or []
        port_text = ", ".join(
            f"{p.get('containerPort')}/{p.get('protocol') or 'TCP'}" for p in ports
        )
        lines.append(f"    Port:\t{port_text or '<none>'}")
        if container.get("command"):
            lines.append(f"    Command:\t{' '.join(container['command'])}")
        if container.get("args"):
            lines.append(f"    Args:\t{' '.join(str(a) for a in container['args'])}")
        env = container.get("env") or []
        if env:
            lines.append("    Environment:")
            for item in env:
                lines.append(f"      {item.get('name')}:\t{item.get('value', '<set from source>')}")
        else:
            lines.append("    Environment:\t<none>")
    return lines


def _pairs(values: dict[str, str]) -> str:
    return "\n\t".join(f"{k}={v}" for k, v in sorted(values.items())) or "<none>"


@rollout.command("history")
@target_options
@click.option("--revision", type=int, default=0, help="Show the pod template of this revision.")
@click.pass_context
@handles_errors
def rollout_history(
    ctx: click.Context, args: tuple[str, ...], namespace: str | None, revision: int
) -> None:
    """List a Deployment's revisions: kumo rollout history deployment/web [--revision N]."""
    client = make_client(ctx)
    info, name = target(args, ("Deployment",))
    deployment = client.get_raw(info, name, namespace or client.namespace)
    revisions = util.history(owned_sets(client, deployment))
    if revision > 0:
        found = [rs for number, rs in revisions if number == revision]
        if not found:
            die(f"unable to find the specified revision {revision}")
        click.echo(f"{qualified(info, name)} with revision #{revision}")
        template = (found[0].get("spec") or {}).get("template") or {}
        click.echo("\n".join(_describe_template(template)).expandtabs(16))
        return
    click.echo(qualified(info, name))
    rows = [["REVISION", "CHANGE-CAUSE"]]
    for number, rs in revisions:
        cause = ((rs.get("metadata") or {}).get("annotations") or {}).get(util.CHANGE_CAUSE)
        rows.append([str(number), cause or "<none>"])
    click.echo(printers.render(rows))


@rollout.command("undo")
@target_options
@click.option(
    "--to-revision", type=int, default=0, help="The revision to go back to (0: previous)."
)
@click.pass_context
@handles_errors
def rollout_undo(
    ctx: click.Context, args: tuple[str, ...], namespace: str | None, to_revision: int
) -> None:
    """Go back to an earlier revision's pod template: kumo rollout undo deployment/web
    [--to-revision N]."""
    client = make_client(ctx)
    info, name = target(args, ("Deployment",))
    ns = namespace or client.namespace
    deployment = client.get_raw(info, name, ns)
    if (deployment.get("spec") or {}).get("paused"):
        die(
            "you cannot rollback a paused deployment; resume it first with "
            f"'kumo rollout resume deployment/{name}' and try again"
        )
    try:
        rs = util.rollback_target(owned_sets(client, deployment), to_revision)
    except util.RollbackError as exc:
        message = str(exc)
        if "no rollout history" in message:
            message = f'no rollout history found for deployment "{name}"'
        die(message)
    patch = util.rollback_patch(deployment, rs)
    if patch is None:
        click.echo(
            f"{qualified(info, name)} skipped rollback (current template already matches "
            f"revision {util.revision(rs)})"
        )
        return
    client.patch_raw(info, name, patch, ns, patch_type=JSON_PATCH)
    click.echo(f"{qualified(info, name)} rolled back")


def _set_paused(
    ctx: click.Context, args: tuple[str, ...], namespace: str | None, paused: bool
) -> None:
    client = make_client(ctx)
    info, name = target(args, ("Deployment",))
    ns = namespace or client.namespace
    deployment = client.get_raw(info, name, ns)
    if bool((deployment.get("spec") or {}).get("paused")) == paused:
        state = "already paused" if paused else "not paused"
        die(f'{info.group_resource} "{name}" is {state}')
    client.patch_raw(info, name, {"spec": {"paused": paused or None}}, ns)
    click.echo(f"{qualified(info, name)} {'paused' if paused else 'resumed'}")


@rollout.command("pause")
@target_options
@click.pass_context
@handles_errors
def rollout_pause(ctx: click.Context, args: tuple[str, ...], namespace: str | None) -> None:
    """Stop rolling out template changes until resumed: kumo rollout pause deployment/web."""
    _set_paused(ctx, args, namespace, True)


@rollout.command("resume")
@target_options
@click.pass_context
@handles_errors
def rollout_resume(ctx: click.Context, args: tuple[str, ...], namespace: str | None) -> None:
    """Roll out again after a pause: kumo rollout resume deployment/web."""
    _set_paused(ctx, args, namespace, False)


@rollout.command("restart")
@target_options
@click.pass_context
@handles_errors
def rollout_restart(ctx: click.Context, args: tuple[str, ...], namespace: str | None) -> None:
    """Replace every pod through a rollout: kumo rollout restart deployment/web."""
    client = make_client(ctx)
    info, name = target(args, ("Deployment",))
    ns = namespace or client.namespace
    deployment = client.get_raw(info, name, ns)
    if (deployment.get("spec") or {}).get("paused"):
        die(
            f'{info.group_resource} "{name}" can\'t restart paused deployment '
            "(run rollout resume first)"
        )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {util.RESTARTED_AT: now}}}}}
    client.patch_raw(info, name, patch, ns)
    click.echo(f"{qualified(info, name)} restarted")


# ---- scale ---------------------------------------------------------------------------------


@click.command("scale")
@target_options
@click.option("--replicas", type=int, required=True, help="The new number of replicas.")
@click.option(
    "--current-replicas",
    type=int,
    default=-1,
    help="Only scale if the current replicas are this many.",
)
@click.option("--resource-version", default="", help="Only scale if this is the current version.")
@click.pass_context
@handles_errors
def scale(
    ctx: click.Context,
    args: tuple[str, ...],
    namespace: str | None,
    replicas: int,
    current_replicas: int,
    resource_version: str,
) -> None:
    """Set the replicas of a Deployment or ReplicaSet through its scale subresource:
    kumo scale deployment/web --replicas 5."""
    if replicas < 0:
        die("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    client = make_client(ctx)
    if all("/" in a for a in args):
        targets = [target((a,)) for a in args]
    else:
        targets = [target(args)]
    ns = namespace or client.namespace
    for info, name in targets:
        if "scale" not in info.subresources:
            die(f"{info.group_resource} cannot be scaled (it has no scale subresource)")
        path = info.path(ns if info.namespaced else None, name, "scale")
        current = client.request("GET", path).json()
        have = (current.get("spec") or {}).get("replicas", 0)
        if current_replicas >= 0 and have != current_replicas:
            die(f"Expected replicas to be {current_replicas}, was {have}")
        body: Obj = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas},
        }
        if resource_version or current_replicas >= 0:
            body["metadata"]["resourceVersion"] = resource_version or current["metadata"].get(
                "resourceVersion"
            )
        client.request("PUT", path, body=body)
        click.echo(f"{qualified(info, name)} scaled")


# ---- autoscale ---------------------------------------------------------------------------------


@click.command("autoscale")
@target_options
@click.option("--min", "min_replicas", type=int, default=None, help="Lower limit of replicas.")
@click.option("--max", "max_replicas", type=int, required=True, help="Upper limit of replicas.")
@click.option(
    "--cpu-percent",
    type=int,
    default=None,
    help="Target average CPU use of the pods, in percent of their CPU request (default 80).",
)
@click.option("--name", default="", help="Name of the HorizontalPodAutoscaler (default: target's).")
@click.pass_context
@handles_errors
def autoscale(
    ctx: click.Context,
    args: tuple[str, ...],
    namespace: str | None,
    min_replicas: int | None,
    max_replicas: int,
    cpu_percent: int | None,
    name: str,
) -> None:
    """Create a HorizontalPodAutoscaler that keeps a Deployment's (or ReplicaSet's) pods at a
    target CPU use: kumo autoscale deployment/web --min 2 --max 10 --cpu-percent 60."""
    info, target_name = target(args)
    if "scale" not in info.subresources:
        die(f"{info.group_resource} cannot be autoscaled (it has no scale subresource)")
    if max_replicas < 1:
        die("--max must be at least 1")
    if min_replicas is not None and not 1 <= min_replicas <= max_replicas:
        die(f"--min must be between 1 and --max ({max_replicas})")
    if cpu_percent is not None and cpu_percent < 1:
        die("--cpu-percent must be at least 1")
    client = make_client(ctx)
    ns = namespace or client.namespace
    client.get_raw(info, target_name, ns)  # a missing target fails here, with its name
    hpa_spec: Obj = {
        "scaleTargetRef": {
            "apiVersion": info.api_version,
            "kind": info.kind,
            "name": target_name,
        },
        "maxReplicas": max_replicas,
    }
    if min_replicas is not None:
        hpa_spec["minReplicas"] = min_replicas
    if cpu_percent is not None:
        hpa_spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": cpu_percent},
                },
            }
        ]
    body: Obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name or target_name, "namespace": ns},
        "spec": hpa_spec,
    }
    client.create_raw(body, ns)
    click.echo(f"horizontalpodautoscaler.autoscaling/{name or target_name} autoscaled")


# ---- create job -------------------------------------------------------------------------------


@create.command("job")
@click.argument("name")
@click.argument("command", nargs=-1)
@namespace_option
@click.option("--from", "source", default=None, help="cronjob/NAME: run that CronJob's Job now.")
@click.option("--image", default=None, help="The image of the Job's one container.")
@click.pass_context
@handles_errors
def create_job(
    ctx: click.Context,
    name: str,
    command: tuple[str, ...],
    namespace: str | None,
    source: str | None,
    image: str | None,
) -> None:
    """Create a Job: from a CronJob's template (kumo create job NAME --from cronjob/CRON), or
    with one container (kumo create job NAME --image busybox -- echo hi)."""
    if (source is None) == (image is None):
        die("either --from=cronjob/NAME or --image=IMAGE is required (not both)")
    client = make_client(ctx)
    ns = namespace or client.namespace
    if source is not None:
        kind, _, cron_name = source.partition("/")
        if resolve_kind(kind).kind != "CronJob" or not cron_name or command:
            die("--from takes cronjob/NAME, and no command")
        info = resolve("cronjobs.batch")[0]
        cronjob = client.get_raw(info, cron_name, ns)
        template = cronjob.get("spec", {}).get("jobTemplate") or {}
        template_meta = template.get("metadata") or {}
        metadata: Obj = {
            "name": name,
            "namespace": ns,
            "labels": dict(template_meta.get("labels") or {}),
            # as kubectl marks a Job run by hand from a CronJob
            "annotations": {
                **(template_meta.get("annotations") or {}),
                "cronjob.kubernetes.io/instantiate": "manual",
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": cron_name,
                    "uid": cronjob["metadata"]["uid"],
                    "controller": True,
                }
            ],
        }
        job_spec = template.get("spec") or {}
    else:
        container: Obj = {"name": name, "image": image}
        if command:
            container["command"] = list(command)
        metadata = {"name": name, "namespace": ns}
        job_spec = {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}
    client.create_raw(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}, ns
    )
    click.echo(f"job.batch/{name} created")


# ---- cordon, uncordon, drain -----------------------------------------------------------------


def _node_info() -> ResourceInfo:
    return resolve("nodes")[0]


def _cordon(client: Client, node: str, unschedulable: bool) -> None:
    info = _node_info()
    current = client.get_raw(info, node)
    if bool((current.get("spec") or {}).get("unschedulable")) == unschedulable:
        click.echo(f"node/{node} already {'cordoned' if unschedulable else 'uncordoned'}")
        return
    client.patch_raw(info, node, {"spec": {"unschedulable": True if unschedulable else None}})
    click.echo(f"node/{node} {'cordoned' if unschedulable else 'uncordoned'}")


@click.command("cordon")
@click.argument("node")
@click.pass_context
@handles_errors
def cordon(ctx: click.Context, node: str) -> None:
    """Mark a node unschedulable: kumo cordon NODE."""
    _cordon(make_client(ctx), node, True)


@click.command("uncordon")
@click.argument("node")
@click.pass_context
@handles_errors
def uncordon(ctx: click.Context, node: str) -> None:
    """Mark a node schedulable again: kumo uncordon NODE."""
    _cordon(make_client(ctx), node, False)


MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def drain_plan(
    pods: list[Obj], *, ignore_daemonsets: bool, force: bool, delete_emptydir_data: bool
) -> tuple[list[Obj], list[str], list[str]]:
    """kubectl drain's filters: (pods to evict, warnings, errors)."""
    evict: list[Obj] = []
    warnings: dict[str, list[str]] = {}
    errors: dict[str, list[str]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta.get('name')}"
        if (meta.get("annotations") or {}).get(MIRROR_ANNOTATION) is not None:
            continue  # the node's agent owns mirror pods; deleting them does nothing
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "DaemonSet":
            if ignore_daemonsets:
                warnings.setdefault("ignoring DaemonSet-managed Pods", []).append(where)
            else:
                errors.setdefault(
                    "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)", []
                ).append(where)
            continue
        finished = is_pod_terminal(pod)
        volumes = (pod.get("spec") or {}).get("volumes") or []
        if not finished and any(v.get("emptyDir") is not None for v in volumes):
            if delete_emptydir_data:
                warnings.setdefault("deleting Pods with local storage", []).append(where)
            else:
                errors.setdefault(
                    "cannot delete Pods with local storage (use --delete-emptydir-data to override)",
                    [],
                ).append(where)
                continue
        if not finished and ref is None:
            if force:
                warnings.setdefault("deleting Pods that declare no controller", []).append(where)
            else:
                errors.setdefault(
                    "cannot delete Pods that declare no controller (use --force to override)", []
                ).append(where)
                continue
        evict.append(pod)
    return (
        evict,
        [f"{text}: {', '.join(names)}" for text, names in warnings.items()],
        [f"{text}: {', '.join(names)}" for text, names in errors.items()],
    )


@click.command("drain")
@click.argument("node")
@click.option("--ignore-daemonsets", is_flag=True, help="Leave DaemonSet-managed pods alone.")
@click.option("--force", is_flag=True, help="Also delete pods that no controller manages.")
@click.option(
    "--delete-emptydir-data",
    "--delete-local-data",
    "delete_emptydir_data",
    is_flag=True,
    help="Also delete pods with emptyDir volumes (their data is lost).",
)
@click.option(
    "--grace-period",
    type=int,
    default=-1,
    help="Seconds each pod gets to stop (-1: the pod's own terminationGracePeriodSeconds).",
)
@click.option("--timeout", default="0s", help="Give up after this long (e.g. 2m); 0: never.")
@click.option(
    "--disable-eviction", is_flag=True, help="Delete pods instead of using the eviction API."
)
@click.option("--pod-selector", default=None, help="Only evict pods matching this selector.")
@click.pass_context
@handles_errors
def drain(
    ctx: click.Context,
    node: str,
    ignore_daemonsets: bool,
    force: bool,
    delete_emptydir_data: bool,
    grace_period: int,
    timeout: str,
    disable_eviction: bool,
    pod_selector: str | None,
) -> None:
    """Cordon a node and evict its pods (through pods/eviction) so their controllers run
    them elsewhere: kumo drain NODE [--ignore-daemonsets] [--force] [--timeout 2m]."""
    client = make_client(ctx)
    limit = parse_duration(timeout)
    started = time.monotonic()
    _cordon(client, node, True)
    pod_info = resolve("pods")[0]
    pods, _ = client.list_all_raw(
        pod_info,
        all_namespaces=True,
        field_selector=f"spec.nodeName={node}",
        label_selector=pod_selector,
    )
    evict, warnings, errors = drain_plan(
        pods,
        ignore_daemonsets=ignore_daemonsets,
        force=force,
        delete_emptydir_data=delete_emptydir_data,
    )
    if errors:
        click.echo(
            f'error: unable to drain node "{node}" due to error: {", ".join(errors)}, '
            "continuing command...",
            err=True,
        )
        click.echo(f"There are pending nodes to be drained:\n {node}", err=True)
        for error in errors:
            click.echo(error, err=True)
        sys.exit(1)
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)

    def out_of_time() -> bool:
        return limit > 0 and time.monotonic() - started > limit

    pending: list[Obj] = []
    for pod in evict:
        meta = pod["metadata"]
        click.echo(f"evicting pod {meta['namespace']}/{meta['name']}")
        while True:
            try:
                _evict_one(client, pod_info, pod, grace_period, disable_eviction)
            except ApiException as exc:
                if exc.not_found:
                    break
                if exc.code == 429:
                    click.echo(
                        f'error when evicting pods/"{meta["name"]}" -n "{meta["namespace"]}" '
                        f"(will retry after 5s): {exc.message}",
                        err=True,
                    )
                    if out_of_time():
                        die(f"drain did not complete within {timeout}")
                    time.sleep(5)
                    continue
                raise
            pending.append(pod)
            break
    while pending:
        still = []
        for pod in pending:
            meta = pod["metadata"]
            try:
                current = client.get_raw(pod_info, meta["name"], meta["namespace"])
            except ApiException as exc:
                if not exc.not_found:
                    raise
                click.echo(f"pod/{meta['name']} evicted")
                continue
            if (current.get("metadata") or {}).get("uid") != meta.get("uid"):
                click.echo(f"pod/{meta['name']} evicted")
                continue
            still.append(pod)
        pending = still
        if not pending:
            break
        if out_of_time():
            die(f"drain did not complete within {timeout}")
        time.sleep(0.5)
    click.echo(f"node/{node} drained")


def _evict_one(
    client: Client, pod_info: ResourceInfo, pod: Obj, grace_period: int, disable_eviction: bool
) -> None:
    meta = pod["metadata"]
    if disable_eviction:
        client.delete_raw(
            pod_info,
            meta["name"],
            meta["namespace"],
            grace_period=grace_period if grace_period >= 0 else None,
        )
        return
    body: Obj = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }
    if grace_period >= 0:
        body["deleteOptions"] = {"gracePeriodSeconds": grace_period}
    client.request("POST", pod_info.path(meta["namespace"], meta["name"], "eviction"), body=body)


# ---- events --------------------------------------------------------------------------------


def event_time(event: Obj) -> datetime.datetime:
    """When an event last happened (kubectl's order: series, lastTimestamp, eventTime), else
    when it was first seen or created."""
    for value in (
        (event.get("series") or {}).get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        (event.get("metadata") or {}).get("creationTimestamp"),
    ):
        when = parse_time(value)
        if when is not None:
            return when
    return datetime.datetime.min.replace(tzinfo=datetime.UTC)


def sort_events(events: list[Obj]) -> list[Obj]:
    return sorted(events, key=lambda e: (event_time(e), (e.get("metadata") or {}).get("name", "")))


@click.command("events")
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Events of every namespace.")
@click.option("--for", "for_object", default=None, help="Only events about KIND/NAME.")
@click.option("--types", default="", help="Comma-separated event types: Normal,Warning.")
@click.option("-w", "--watch", is_flag=True, help="After listing, wait for more.")
@click.option("--no-headers", is_flag=True, help="Omit the header row.")
@click.pass_context
@handles_errors
def events(
    ctx: click.Context,
    namespace: str | None,
    all_namespaces: bool,
    for_object: str | None,
    types: str,
    watch: bool,
    no_headers: bool,
) -> None:
    """Events, oldest first: kumo events [--for deployment/web] [--types Warning] [-w]."""
    client = make_client(ctx)
    event_info = resolve("events")[0]
    ns = namespace or client.namespace
    fields: list[str] = []
    across = all_namespaces
    if for_object:
        info, name = target((for_object,))
        fields += [f"involvedObject.kind={info.kind}", f"involvedObject.name={name}"]
        if not info.namespaced and not namespace:
            across = True  # events about cluster-scoped objects live in "default" or anywhere
    wanted_types = {t.strip().lower() for t in types.split(",") if t.strip()}
    allowed: Callable[[Obj], bool] = lambda e: (  # noqa: E731
        not wanted_types or str(e.get("type", "")).lower() in wanted_types
    )
    items, version = client.list_all_raw(
        event_info, ns, all_namespaces=across, field_selector=",".join(fields) or None
    )
    shown = [e for e in sort_events(items) if allowed(e)]
    rows = printers.table(event_info, shown, all_namespaces=across, headers=not no_headers)
    if shown:
        click.echo(printers.render(rows))
    elif not watch:
        where = "" if across else f" in {ns} namespace"
        click.echo(f"No events found{where}.", err=True)
    if not watch:
        return
    while True:
        try:
            for event in client.watch_raw(
                event_info,
                ns,
                all_namespaces=across,
                field_selector=",".join(fields) or None,
                resource_version=version,
            ):
                obj = event.object
                version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                if event.type in ("ADDED", "MODIFIED") and allowed(obj):
                    row = printers.table(event_info, [obj], all_namespaces=across, headers=False)
                    click.echo(printers.render(row))
        except ApiException as exc:
            if not exc.gone:
                raise
            _, version = client.list_all_raw(event_info, ns, all_namespaces=across)
        except httpx.RemoteProtocolError:
            time.sleep(1)


def register(group: click.Group) -> None:
    group.add_command(rollout)
    group.add_command(scale)
    group.add_command(autoscale)
    group.add_command(cordon)
    group.add_command(uncordon)
    group.add_command(drain)
    group.add_command(events)
