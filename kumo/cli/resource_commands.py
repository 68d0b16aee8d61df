"""kubectl-like verbs: get, describe, apply, create, delete, patch, api-resources, version,
config."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import httpx

import kumo
from kumo.cli import describe as describe_page
from kumo.cli import manifests, printers
from kumo.client import ApiException, Client, ConfigError, KubeConfig
from kumo.client.client import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, info_of
from kumo.client.config import default_path, load
from kumo.model.registry import RESOURCES, ResourceInfo, resolve

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def handles_errors(func: F) -> F:
    """Turn client-side failures into kubectl-style messages and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ApiException as exc:
            click.echo(f"Error from server ({exc.reason or exc.code}): {exc.message}", err=True)
            sys.exit(1)
        except ConfigError as exc:
            fail(str(exc))
        except manifests.ManifestError as exc:
            fail(str(exc))
        except httpx.ConnectError as exc:
            fail(f"cannot reach the kumo API ({exc}); is kumo running? Start it with `kumo up`.")
        except httpx.HTTPError as exc:
            fail(f"talking to the kumo API failed: {exc}")
        return None

    return wrapper  # type: ignore[return-value]


def make_client(ctx: click.Context) -> Client:
    obj = ctx.find_root().obj or {}
    config = load(default_path(), obj.get("context"))
    config.impersonate = obj.get("as") or None
    config.impersonate_groups = list(obj.get("as_groups") or [])
    return Client(config, on_warning=_warn)


def resolve_kind(name: str) -> ResourceInfo:
    found = resolve(name)
    if not found:
        raise ApiException(
            404,
            {
                "reason": "NotFound",
                "message": f'the server doesn\'t have a resource type "{name}"; see `kumo api-resources`',
            },
        )
    return found[0]


def _targets(args: tuple[str, ...]) -> list[tuple[ResourceInfo, list[str]]]:
    """``deploy,svc [NAME...]`` or ``deploy/web svc/db`` -> [(kind, names)]."""
    if not args:
        raise click.UsageError(
            "you must specify the type of resource to get; see `kumo api-resources`"
        )
    if all("/" in a for a in args):
        out: list[tuple[ResourceInfo, list[str]]] = []
        for arg in args:
            kind, _, name = arg.partition("/")
            out.append((resolve_kind(kind), [name]))
        return out
    kinds_text, *names = args
    infos: list[ResourceInfo] = []
    for part in kinds_text.split(","):
        if not part:
            continue
        found = resolve(part)
        if not found:
            resolve_kind(part)
        infos.extend(i for i in found if i not in infos)
    return [(info, list(names)) for info in infos]


def namespace_option(func: F) -> F:
    func = click.option(
        "-n", "--namespace", default=None, help="The namespace (default: the context's)."
    )(func)
    return func


# ---- get ---------------------------------------------------------------------------------


@click.command("get")
@click.argument("args", nargs=-1)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-o", "--output", type=click.Choice(["wide", "yaml", "json", "name"]), default=None)
@click.option("-l", "--selector", default=None, help="Label selector, e.g. app=web,tier!=db")
@click.option("--field-selector", default=None, help="Field selector, e.g. status.phase=Running")
@click.option("-w", "--watch", is_flag=True, help="After listing, watch for changes.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@click.option("--no-headers", is_flag=True, help="Omit the header row.")
@click.pass_context
@handles_errors
def get(
    ctx: click.Context,
    args: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    output: str | None,
    selector: str | None,
    field_selector: str | None,
    watch: bool,
    show_labels: bool,
    no_headers: bool,
) -> None:
    """Show one or many resources: kumo get deploy,svc [NAME] [-n NS|-A] [-o wide|yaml|json|name]."""
    client = make_client(ctx)
    targets = _targets(args)
    ns = namespace or client.namespace
    collected: list[tuple[ResourceInfo, list[dict[str, Any]]]] = []
    errors: list[str] = []
    last_version = ""
    for info, names in targets:
        if names:
            items = []
            for name in names:
                try:
                    items.append(client.get_raw(info, name, ns))
                except ApiException as exc:
                    if not exc.not_found:
                        raise
                    errors.append(f"Error from server (NotFound): {exc.message}")
        else:
            items, last_version = client.list_all_raw(
                info,
                ns,
                all_namespaces=all_namespaces,
                label_selector=selector,
                field_selector=field_selector,
            )
        if info.kind == "Event":
            from kumo.cli.workload_commands import sort_events

            items = sort_events(items)  # oldest first, as `kumo events` shows them
        collected.append((info, items))
    single = len(targets) == 1 and len(targets[0][1]) == 1
    if output in ("yaml", "json"):
        everything = [obj for _, items in collected for obj in items]
        if everything:
            click.echo(
                printers.dump(everything[0] if single else printers.as_list(everything), output)
            )
    elif output == "name":
        for info, items in collected:
            for obj in items:
                click.echo(printers.qualified_name(info, obj))
    else:
        multiple_kinds = len([1 for _, items in collected if items]) > 1
        printed = False
        for info, items in collected:
            if not items:
                continue
            if printed:
                click.echo("")
            rows = printers.table(
                info,
                items,
                wide=output == "wide",
                all_namespaces=all_namespaces,
                prefix_kind=multiple_kinds,
                show_labels=show_labels,
                headers=not no_headers,
            )
            click.echo(printers.render(rows))
            printed = True
        if not printed and not errors:
            where = "" if all_namespaces else f" in {ns} namespace"
            click.echo(f"No resources found{where}.", err=True)
    for error in errors:
        click.echo(error, err=True)
    if watch:
        if len(targets) != 1 or targets[0][1]:
            fail("watch is only supported on a single resource type without names")
        info = targets[0][0]
        _watch_rows(
            client, info, ns, all_namespaces, selector, field_selector, last_version, output
        )
    if errors:
        sys.exit(1)


def _watch_rows(
    client: Client,
    info: ResourceInfo,
    ns: str,
    all_namespaces: bool,
    selector: str | None,
    field_selector: str | None,
    version: str,
    output: str | None,
) -> None:
    widths: list[int] | None = None
    while True:
        try:
            for event in client.watch_raw(
                info,
                ns,
                all_namespaces=all_namespaces,
                resource_version=version,
                label_selector=selector,
                field_selector=field_selector,
            ):
                obj = event.object
                version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                if event.type == "BOOKMARK":
                    continue
                if output in ("yaml", "json"):
                    click.echo(printers.dump(obj, output) + ("\n---" if output == "yaml" else ""))
                    continue
                if output == "name":
                    click.echo(printers.qualified_name(info, obj))
                    continue
                row = printers.table(
                    info, [obj], wide=output == "wide", all_namespaces=all_namespaces, headers=False
                )
                if widths is None:
                    widths = [max(len(c), 12) for c in row[0]]
                click.echo(
                    printers.render(
                        row, [max(w, len(c)) for w, c in zip(widths, row[0], strict=False)]
                    )
                )
        except ApiException as exc:
            if exc.gone:
                _, version = client.list_all_raw(
                    info, ns, all_namespaces=all_namespaces, label_selector=selector
                )
                continue
            raise
        except httpx.RemoteProtocolError:
            time.sleep(1)


# ---- describe -------------------------------------------------------------------------------


@click.command("describe")
@click.argument("args", nargs=-1, required=True)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-l", "--selector", default=None)
@click.pass_context
@handles_errors
def describe(
    ctx: click.Context,
    args: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
) -> None:
    """Show details of resources and their events: kumo describe KIND [NAME]."""
    client = make_client(ctx)
    ns = namespace or client.namespace
    event_info = resolve_kind("events")
    pages = []
    for info, names in _targets(args):
        if names:
            objects = [client.get_raw(info, name, ns) for name in names]
        else:
            objects, _ = client.list_all_raw(
                info, ns, all_namespaces=all_namespaces, label_selector=selector
            )
        for obj in objects:
            meta = obj.get("metadata") or {}
            events: list[dict[str, Any]] = []
            if info.kind != "Event" and meta.get("uid"):
                events, _ = client.list_all_raw(
                    event_info,
                    meta.get("namespace") or ns,
                    all_namespaces=not info.namespaced,
                    field_selector=f"involvedObject.uid={meta['uid']}",
                )
                events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
            pages.append(describe_page.describe(info, obj, events))
    if not pages:
        click.echo(f"No resources found in {ns} namespace.", err=True)
    click.echo("\n\n".join(pages))


# ---- apply / create ----------------------------------------------------------------------------


def _read_manifests(files: tuple[str, ...], recursive: bool) -> list[manifests.Manifest]:
    if not files:
        raise click.UsageError("give the manifests with -f FILE|DIR|- (repeatable)")
    found = manifests.read(files, recursive)
    # Namespaces first, so the objects in them can be created in the same run.
    found.sort(key=lambda m: 0 if m.obj.get("kind") == "Namespace" else 1)
    return found


@click.command("apply")
@click.option(
    "-f", "--filename", "files", multiple=True, help="File, directory or - for stdin (repeatable)."
)
@click.option("-R", "--recursive", is_flag=True, help="Walk directories given with -f recursively.")
@namespace_option
@click.option(
    "--dry-run",
    type=click.Choice(["none", "server"]),
    default="none",
    help="server: validate and admit, store nothing.",
)
@click.pass_context
@handles_errors
def apply(
    ctx: click.Context, files: tuple[str, ...], recursive: bool, namespace: str | None, dry_run: str
) -> None:
    """Create or update resources from manifests (kubectl apply)."""
    client = make_client(ctx)
    ns = namespace or client.namespace
    failed = False
    suffix = " (server dry run)" if dry_run == "server" else ""
    for manifest in _read_manifests(files, recursive):
        try:
            info = info_of(manifest.obj)
            result = client.apply_raw(manifest.obj, ns, dry_run=dry_run == "server")
        except ApiException as exc:
            verb = "applying"
            click.echo(
                f'Error from server ({exc.reason or exc.code}): error when {verb} "{manifest.source}": {exc.message}',
                err=True,
            )
            failed = True
            continue
        click.echo(
            f"{info.kind_group}/{result.object.get('metadata', {}).get('name')} {result.action}{suffix}"
        )
    if failed:
        sys.exit(1)


@click.group("create", invoke_without_command=True)
@click.option("-f", "--filename", "files", multiple=True, help="File, directory or - for stdin.")
@click.option("-R", "--recursive", is_flag=True)
@namespace_option
@click.pass_context
@handles_errors
def create(
    ctx: click.Context, files: tuple[str, ...], recursive: bool, namespace: str | None
) -> None:
    """Create resources from manifests, or: kumo create namespace NAME."""
    if ctx.invoked_subcommand is not None:
        return
    client = make_client(ctx)
    ns = namespace or client.namespace
    failed = False
    for manifest in _read_manifests(files, recursive):
        try:
            info = info_of(manifest.obj)
            created = client.create_raw(manifest.obj, ns)
        except ApiException as exc:
            click.echo(
                f'Error from server ({exc.reason or exc.code}): error when creating "{manifest.source}": {exc.message}',
                err=True,
            )
            failed = True
            continue
        click.echo(f"{info.kind_group}/{created.get('metadata', {}).get('name')} created")
    if failed:
        sys.exit(1)


@create.command("namespace")
@click.argument("name")
@click.pass_context
@handles_errors
def create_namespace(ctx: click.Context, name: str) -> None:
    """Create a namespace."""
    client = make_client(ctx)
    client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    click.echo(f"namespace/{name} created")


# ---- delete -------------------------------------------------------------------------------------


@click.command("delete")
@click.argument("args", nargs=-1)
@click.option(
    "-f", "--filename", "files", multiple=True, help="Delete what these manifests describe."
)
@click.option("-R", "--recursive", is_flag=True)
@namespace_option
@click.option(
    "-l", "--selector", default=None, help="Delete everything matching this label selector."
)
@click.option(
    "--all", "delete_all", is_flag=True, help="Delete every object of the kind in the namespace."
)
@click.option(
    "--cascade",
    type=click.Choice(["background", "foreground", "orphan"]),
    default="background",
    show_default=True,
)
@click.option(
    "--grace-period", type=int, default=None, help="Seconds to let pods terminate (0: immediately)."
)
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until the objects are gone."
)
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait with --wait."
)
@click.option("--ignore-not-found", is_flag=True)
@click.pass_context
@handles_errors
def delete(
    ctx: click.Context,
    args: tuple[str, ...],
    files: tuple[str, ...],
    recursive: bool,
    namespace: str | None,
    selector: str | None,
    delete_all: bool,
    cascade: str,
    grace_period: int | None,
    wait: bool,
    timeout: float,
    ignore_not_found: bool,
) -> None:
    """Delete resources: kumo delete (-f FILE | KIND NAME... | KIND -l SELECTOR | KIND --all)."""
    client = make_client(ctx)
    ns = namespace or client.namespace
    victims: list[tuple[ResourceInfo, str, str]] = []
    if files:
        for manifest in _read_manifests(files, recursive):
            info = info_of(manifest.obj)
            meta = manifest.obj.get("metadata") or {}
            victims.append((info, str(meta.get("name", "")), str(meta.get("namespace") or ns)))
    else:
        for info, names in _targets(args):
            if names:
                victims.extend((info, name, ns) for name in names)
            elif selector or delete_all:
                items, _ = client.list_all_raw(info, ns, label_selector=selector)
                victims.extend((info, str(o["metadata"]["name"]), ns) for o in items)
            else:
                raise click.UsageError("give names, -l SELECTOR or --all")
    failed = False
    pending: list[tuple[ResourceInfo, str, str, str]] = []
    for info, name, where in victims:
        try:
            deleted = client.delete_raw(
                info, name, where, propagation=cascade.capitalize(), grace_period=grace_period
            )
        except ApiException as exc:
            if exc.not_found and ignore_not_found:
                continue
            click.echo(f"Error from server ({exc.reason or exc.code}): {exc.message}", err=True)
            failed = True
            continue
        click.echo(f'{info.kind_group} "{name}" deleted')
        pending.append((info, name, where, str((deleted.get("metadata") or {}).get("uid", ""))))
    if wait:
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            remaining = []
            for info, name, where, uid in pending:
                try:
                    obj = client.get_raw(info, name, where)
                except ApiException as exc:
                    if exc.not_found:
                        continue
                    raise
                if uid and (obj.get("metadata") or {}).get("uid") != uid:
                    continue  # a new object with the same name
                remaining.append((info, name, where, uid))
            pending = remaining
            if pending:
                time.sleep(0.2)
        if pending:
            still = ", ".join(f"{i.kind_group}/{n}" for i, n, _, _ in pending)
            fail(f"timed out waiting for the deletion of {still} (finalizers may still be running)")
    if failed:
        sys.exit(1)


# ---- patch ----------------------------------------------------------------------------------------


@click.command("patch")
@click.argument("kind")
@click.argument("name")
@namespace_option
@click.option("-p", "--patch", "patch_text", required=True, help="The patch, as JSON or YAML.")
@click.option(
    "--type",
    "patch_type",
    type=click.Choice(["strategic", "merge", "json"]),
    default="strategic",
    show_default=True,
)
@click.option("--subresource", type=click.Choice(["status", "scale"]), default=None)
@click.pass_context
@handles_errors
def patch(
    ctx: click.Context,
    kind: str,
    name: str,
    namespace: str | None,
    patch_text: str,
    patch_type: str,
    subresource: str | None,
) -> None:
    """Update fields of a resource with a patch."""
    import yaml

    client = make_client(ctx)
    info = resolve_kind(kind)
    try:
        body = yaml.safe_load(patch_text)
    except yaml.YAMLError as exc:
        fail(f"the patch is not valid JSON or YAML: {exc}")
    content_type = {"strategic": STRATEGIC_PATCH, "merge": MERGE_PATCH, "json": JSON_PATCH}[
        patch_type
    ]
    client.patch_raw(
        info, name, body, namespace or client.namespace, patch_type=content_type, sub=subresource
    )
    click.echo(f"{info.kind_group}/{name} patched")


# ---- api-resources / version ------------------------------------------------------------------


@click.command("api-resources")
@click.option(
    "--namespaced",
    type=bool,
    default=None,
    help="Only namespaced (true) or cluster-scoped (false) kinds.",
)
@click.option("-o", "--output", type=click.Choice(["wide", "name"]), default=None)
def api_resources(namespaced: bool | None, output: str | None) -> None:
    """The kinds kumo serves."""
    infos = [r for r in RESOURCES if namespaced is None or r.namespaced == namespaced]
    infos.sort(key=lambda r: (r.group, r.plural))
    if output == "name":
        for info in infos:
            click.echo(info.group_resource)
        return
    rows = [
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        + (["VERBS"] if output == "wide" else [])
    ]
    for info in infos:
        row = [
            info.plural,
            ",".join(info.short_names),
            info.api_version,
            str(info.namespaced).lower(),
            info.kind,
        ]
        if output == "wide":
            row.append("create,delete,deletecollection,get,list,patch,update,watch")
        rows.append(row)
    click.echo(printers.render(rows))


@click.command("version")
@click.option("--client", "client_only", is_flag=True, help="Only the client version.")
@click.pass_context
def version(ctx: click.Context, client_only: bool) -> None:
    """Client and server versions."""
    click.echo(f"Client Version: v{kumo.__version__}")
    if client_only:
        return
    try:
        client = make_client(ctx)
        info = client.request("GET", "/version").json()
    except (ConfigError, ApiException, httpx.HTTPError) as exc:
        click.echo(f"Server Version: unavailable ({exc})", err=True)
        sys.exit(1)
    click.echo(f"Server Version: {info.get('gitVersion')}")


# ---- config ---------------------------------------------------------------------------------------


@click.group("config")
def config() -> None:
    """Client configuration (~/.kumo/config): contexts and namespaces."""


@config.command("get-contexts")
def get_contexts() -> None:
    """List the contexts."""
    data = KubeConfig.load(default_path())
    rows = [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
    for name in data.context_names():
        ctx = data.context(name) or {}
        rows.append(
            [
                "*" if name == data.current_context else "",
                name,
                str(ctx.get("cluster", "")),
                str(ctx.get("user", "")),
                str(ctx.get("namespace", "")),
            ]
        )
    click.echo(printers.render(rows))


@config.command("current-context")
def current_context() -> None:
    """Print the current context."""
    data = KubeConfig.load(default_path())
    if not data.current_context:
        fail("current-context is not set")
    click.echo(data.current_context)


@config.command("use-context")
@click.argument("name")
def use_context(name: str) -> None:
    """Switch to another context."""
    data = KubeConfig.load(default_path())
    try:
        data.use_context(name)
    except ConfigError as exc:
        fail(str(exc))
    data.save()
    click.echo(f'Switched to context "{name}".')


@config.command("set-context")
@click.argument("name", required=False)
@click.option("--current", is_flag=True, help="Change the current context.")
@click.option("--namespace", required=True, help="The default namespace of the context.")
def set_context(name: str | None, current: bool, namespace: str) -> None:
    """Set the default namespace of a context."""
    data = KubeConfig.load(default_path())
    target = data.current_context if current or not name else name
    try:
        data.set_namespace(namespace, target)
    except ConfigError as exc:
        fail(str(exc))
    data.save()
    click.echo(f'Context "{target}" modified.')


@config.command("view")
@click.option("--raw", is_flag=True, help="Show tokens and certificates too.")
def view(raw: bool) -> None:
    """Show the configuration (secrets redacted unless --raw)."""
    data = json.loads(json.dumps(KubeConfig.load(default_path()).data))
    if not raw:
        for user in data.get("users") or []:
            if isinstance(user.get("user"), dict) and "token" in user["user"]:
                user["user"]["token"] = "REDACTED"
        for cluster in data.get("clusters") or []:
            if (
                isinstance(cluster.get("cluster"), dict)
                and "certificate-authority-data" in cluster["cluster"]
            ):
                cluster["cluster"]["certificate-authority-data"] = "DATA+OMITTED"
    click.echo(printers.dump(data, "yaml"))


def register(group: click.Group) -> None:
    for command in (get, describe, apply, create, delete, patch, api_resources, version, config):
        group.add_command(command)
