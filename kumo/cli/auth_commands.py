"""Access commands: ``kumo auth whoami|can-i``, ``kumo create token``, ``kumo admin token
create|list|revoke``, and the API server's authentication and audit flags.

``kumo auth can-i VERB RESOURCE[/SUB] [NAME]`` prints ``yes`` (exit 0) or ``no`` (exit 1),
like ``kubectl auth can-i``; ``VERB /path`` asks about a non-resource URL.
``kumo admin token create --component scheduler|controllers|gateway|node [--node-name N]``
mints the least-privilege identity of a kumo component run on its own.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from kumo.auth.oidc import OIDCOptions
from kumo.auth.service_accounts import DEFAULT_ISSUER
from kumo.auth.user import COMPONENTS, component_identity
from kumo.cli.admin_commands import admin
from kumo.cli.resource_commands import create, handles_errors, make_client, namespace_option
from kumo.client import Client, KubeConfig
from kumo.model.registry import resolve
from kumo.platform.api.access import AccessOptions
from kumo.platform.api.discovery import VIRTUAL

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> int:
    """``1h``, ``90m``, ``1h30m``, ``3600s``, ``7d`` or plain seconds -> whole seconds."""
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    position, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not value or position != len(value):
        raise click.BadParameter(f"{text!r} is not a duration such as 30m, 1h or 24h")
    return int(total)


def _post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = client.request("POST", path, body=body).json()
    return data


def _print(data: Any, output: str | None) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# ---- kumo auth ----------------------------------------------------------------------------------


@click.group("auth")
def auth() -> None:
    """Inspect authorization: who am I, may I?"""


@auth.command("whoami")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default=None)
@click.pass_context
@handles_errors
def whoami(ctx: click.Context, output: str | None) -> None:
    """The user, uid and groups the server sees for the current credentials."""
    with make_client(ctx) as client:
        review = _post(
            client,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    if output:
        _print(review, output)
        return
    info = (review.get("status") or {}).get("userInfo") or {}
    rows = [["ATTRIBUTE", "VALUE"], ["Username", str(info.get("username", ""))]]
    if info.get("uid"):
        rows.append(["UID", str(info["uid"])])
    rows.append(["Groups", "[" + " ".join(info.get("groups") or []) + "]"])
    for key, values in sorted((info.get("extra") or {}).items()):
        rows.append([f"Extra: {key}", "[" + " ".join(values) + "]"])
    _table(rows)


def _subresources(plural: str, group: str) -> set[str]:
    subs: set[str] = set()
    for info in resolve(plural):
        if info.group == group:
            subs.update(info.subresources)
    for entries in VIRTUAL.values():
        for entry in entries:
            base, _, sub = str(entry["name"]).partition("/")
            if sub and base == plural:
                subs.add(sub)
    return subs


def _resource_attributes(
    verb: str, resource: str, name: str | None, subresource: str | None, namespace: str
) -> dict[str, Any]:
    kind, slash, rest = resource.partition("/")
    plural, group, namespaced = kind, "", True
    found = resolve(kind)
    if found:
        plural, group, namespaced = found[0].plural, found[0].group, found[0].namespaced
    else:
        plural, _, group = kind.partition(".")
        for entries in VIRTUAL.values():
            for entry in entries:
                if entry["name"] == plural:
                    namespaced = bool(entry["namespaced"])
        if not any(e["name"] == plural for v in VIRTUAL.values() for e in v):
            click.echo(f"Warning: the server doesn't have a resource type '{kind}'", err=True)
    sub = subresource or ""
    if slash:
        if not sub and rest in _subresources(plural, group):
            sub = rest
        elif not name:
            name = rest
    attributes: dict[str, Any] = {"verb": verb, "group": group, "resource": plural}
    if sub:
        attributes["subresource"] = sub
    if name:
        attributes["name"] = name
    if namespaced and namespace:
        attributes["namespace"] = namespace
    return attributes


@auth.command("can-i")
@click.argument("verb")
@click.argument("resource")
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="In every namespace.")
@click.option("--subresource", default=None, help="The subresource (e.g. log, scale, status).")
@click.option("--as", "as_user", default=None, help="Ask for this user (needs impersonate).")
@click.option("--as-group", "as_groups", multiple=True, help="Ask with this group (with --as).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; answer with the exit code.")
@click.pass_context
@handles_errors
def can_i(
    ctx: click.Context,
    verb: str,
    resource: str,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    subresource: str | None,
    as_user: str | None,
    as_groups: tuple[str, ...],
    quiet: bool,
) -> None:
    """Whether VERB on RESOURCE[/SUB] [NAME] (or on a /path) is allowed: yes (exit 0) or no
    (exit 1)."""
    client = make_client(ctx)
    if as_user:
        client.close()
        client.config.impersonate = as_user
        client.config.impersonate_groups = list(as_groups)
        client = Client(client.config)
    with client:
        if resource.startswith("/"):
            spec: dict[str, Any] = {"nonResourceAttributes": {"verb": verb, "path": resource}}
        else:
            ns = "" if all_namespaces else (namespace or client.namespace)
            spec = {
                "resourceAttributes": _resource_attributes(verb, resource, name, subresource, ns)
            }
        review = _post(
            client,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": spec,
            },
        )
    allowed = bool((review.get("status") or {}).get("allowed"))
    if not quiet:
        click.echo("yes" if allowed else "no")
    sys.exit(0 if allowed else 1)


# ---- kumo create token ------------------------------------------------------------------------


@create.command("token")
@click.argument("service_account")
@namespace_option
@click.option("--duration", default=None, help="How long the token lasts (e.g. 1h; min 10m).")
@click.option("--audience", "audiences", multiple=True, help="An audience (repeatable).")
@click.option("--bound-object-kind", default=None, type=click.Choice(["Pod"]))
@click.option("--bound-object-name", default=None, help="The Pod the token is bound to.")
@click.option("--bound-object-uid", default=None, help="The uid that Pod must have.")
@click.pass_context
@handles_errors
def create_token(
    ctx: click.Context,
    service_account: str,
    namespace: str | None,
    duration: str | None,
    audiences: tuple[str, ...],
    bound_object_kind: str | None,
    bound_object_name: str | None,
    bound_object_uid: str | None,
) -> None:
    """Request a service-account token (TokenRequest) and print it."""
    spec: dict[str, Any] = {}
    if duration:
        spec["expirationSeconds"] = parse_duration(duration)
    if audiences:
        spec["audiences"] = list(audiences)
    if bound_object_kind or bound_object_name:
        if not (bound_object_kind and bound_object_name):
            raise click.UsageError("--bound-object-kind and --bound-object-name go together")
        bound = {"kind": bound_object_kind, "apiVersion": "v1", "name": bound_object_name}
        if bound_object_uid:
            bound["uid"] = bound_object_uid
        spec["boundObjectRef"] = bound
    with make_client(ctx) as client:
        ns = namespace or client.namespace
        result = _post(
            client,
            f"/api/v1/namespaces/{ns}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
    click.echo(str((result.get("status") or {}).get("token", "")))


# ---- kumo admin token ------------------------------------------------------------------------

USER_TOKENS = "/apis/kumo.dev/v1/usertokens"


@admin.group("token")
def token() -> None:
    """User tokens: create (shown once), list (no secrets), revoke."""


@token.command("create")
@click.argument("user", required=False)
@click.option("--group", "groups", multiple=True, help="A group of the user (repeatable).")
@click.option(
    "--component",
    type=click.Choice(COMPONENTS),
    default=None,
    help="Instead of USER: the identity of a kumo component run on its own (kumo scheduler|"
    "controllers|gateway|agent): system:kube-scheduler, system:kube-controller-manager, "
    "system:kumo:gateway, or system:node:<--node-name> in group system:nodes.",
)
@click.option("--node-name", default=None, help="The node of a --component node token.")
@click.option("--ttl", default=None, help="Lifetime, e.g. 24h or 30d (default: no expiry).")
@click.option("--description", default="", help="What the token is for.")
@click.option(
    "--write-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a client config (mode 0600) for this server and the new token, for "
    "KUMOCONFIG=FILE kumo scheduler|controllers|gateway|agent.",
)
@click.pass_context
@handles_errors
def token_create(
    ctx: click.Context,
    user: str | None,
    groups: tuple[str, ...],
    component: str | None,
    node_name: str | None,
    ttl: str | None,
    description: str,
    write_config: Path | None,
) -> None:
    """Create a token for USER (or for a kumo --component) and print it (it is not shown
    again)."""
    if component is not None:
        if user or groups:
            raise click.UsageError("give USER (and --group) or --component, not both")
        if component == "node" and not node_name:
            raise click.UsageError("--component node needs --node-name")
        if component != "node" and node_name:
            raise click.UsageError("--node-name goes with --component node")
        user, component_groups = component_identity(component, node_name)
        groups = tuple(component_groups)
        description = description or f"kumo {component}" + (f" {node_name}" if node_name else "")
    elif not user:
        raise click.UsageError("give USER or --component")
    elif node_name:
        raise click.UsageError("--node-name goes with --component node")
    spec: dict[str, Any] = {"user": user, "groups": list(groups), "description": description}
    if ttl:
        spec["expirationSeconds"] = parse_duration(ttl)
    with make_client(ctx) as client:
        result = _post(
            client, USER_TOKENS, {"apiVersion": "kumo.dev/v1", "kind": "UserToken", "spec": spec}
        )
        server, ca_data = client.config.server, client.config.ca_data
    status = result.get("status") or {}
    if write_config is not None:
        name = f"kumo-{component or user}"
        written = KubeConfig.load(write_config)
        written.set_cluster(name, server, ca_data)
        written.set_user(name, str(status.get("token", "")))
        written.set_context(name, name, name, "default")
        written.use_context(name)
        written.save()
        click.echo(f"client config written to {write_config} (context {name!r})", err=True)
    expires = status.get("expirationTimestamp") or "never"
    click.echo(
        f"usertoken/{result.get('metadata', {}).get('name')} created for {user}"
        f" (expires: {expires}); the token is shown only now:",
        err=True,
    )
    click.echo(str(status.get("token", "")))


@token.command("list")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default=None)
@click.pass_context
@handles_errors
def token_list(ctx: click.Context, output: str | None) -> None:
    """The user tokens (ids, users, groups, expiry, state; never the secrets)."""
    with make_client(ctx) as client:
        data = client.request("GET", USER_TOKENS).json()
    if output:
        _print(data, output)
        return
    rows = [["ID", "USER", "GROUPS", "CREATED", "EXPIRES", "STATE", "DESCRIPTION"]]
    for item in data.get("items") or []:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        state = (
            "revoked" if status.get("revoked") else "expired" if status.get("expired") else "active"
        )
        rows.append(
            [
                str(item.get("metadata", {}).get("name", "")),
                str(spec.get("user", "")),
                ",".join(spec.get("groups") or []) or "<none>",
                str(item.get("metadata", {}).get("creationTimestamp") or ""),
                str(status.get("expirationTimestamp") or "never"),
                state,
                str(spec.get("description") or ""),
            ]
        )
    if len(rows) == 1:
        click.echo("No user tokens.", err=True)
        return
    _table(rows)


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
@handles_errors
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by id: it stops working at once."""
    with make_client(ctx) as client:
        client.request("DELETE", f"{USER_TOKENS}/{token_id}")
    click.echo(f"usertoken/{token_id} revoked")


# ---- API server flags -----------------------------------------------------------------------


def access_flags(func: F) -> F:
    """The API server's authentication and audit flags (``kumo apiserver`` and ``kumo up``)."""
    options = [
        click.option(
            "--audit-log-path",
            default=None,
            help="The audit log (JSON lines; default <data-dir>/audit.log; '-' turns it off).",
        ),
        click.option(
            "--service-account-issuer",
            default=DEFAULT_ISSUER,
            show_default=True,
            help="iss of service-account tokens.",
        ),
        click.option(
            "--api-audiences",
            "api_audiences",
            multiple=True,
            help="Audiences the API accepts in tokens (default: the issuer). Repeatable.",
        ),
        click.option("--oidc-issuer-url", default=None, help="Accept ID tokens of this issuer."),
        click.option("--oidc-client-id", default=None, help="The aud ID tokens must carry."),
        click.option(
            "--oidc-username-claim", default="sub", show_default=True, help="Claim for the name."
        ),
        click.option(
            "--oidc-username-prefix",
            default=None,
            help="Prefix of OIDC user names (default '<issuer>#' unless the claim is email; "
            "'-' for none).",
        ),
        click.option("--oidc-groups-claim", default=None, help="Claim holding the groups."),
        click.option("--oidc-groups-prefix", default="", help="Prefix of OIDC group names."),
        click.option(
            "--oidc-jwks-file",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="The issuer's keys (JWKS); default: fetched via its discovery document.",
        ),
        click.option(
            "--oidc-ca-file",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="CA bundle to reach the issuer.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


ACCESS_FLAGS = (
    "audit_log_path",
    "service_account_issuer",
    "api_audiences",
    "oidc_issuer_url",
    "oidc_client_id",
    "oidc_username_claim",
    "oidc_username_prefix",
    "oidc_groups_claim",
    "oidc_groups_prefix",
    "oidc_jwks_file",
    "oidc_ca_file",
)


def access_options(values: dict[str, Any]) -> AccessOptions:
    """AccessOptions from the flags of ``access_flags`` (pops them from ``values``)."""
    flags = {name: values.pop(name, None) for name in ACCESS_FLAGS}
    options = AccessOptions(
        service_account_issuer=flags["service_account_issuer"] or DEFAULT_ISSUER,
        api_audiences=list(flags["api_audiences"] or []),
    )
    audit_path = flags["audit_log_path"]
    if audit_path == "-":
        options.audit = False
    elif audit_path:
        options.audit_log_path = Path(audit_path)
    if flags["oidc_issuer_url"]:
        if not flags["oidc_client_id"]:
            raise click.UsageError("--oidc-issuer-url needs --oidc-client-id")
        options.oidc = OIDCOptions(
            issuer_url=flags["oidc_issuer_url"],
            client_id=flags["oidc_client_id"],
            username_claim=flags["oidc_username_claim"] or "sub",
            username_prefix=flags["oidc_username_prefix"],
            groups_claim=flags["oidc_groups_claim"],
            groups_prefix=flags["oidc_groups_prefix"] or "",
            jwks_file=flags["oidc_jwks_file"],
            ca_file=flags["oidc_ca_file"],
        )
    return options


def register(group: click.Group) -> None:
    group.add_command(auth)
