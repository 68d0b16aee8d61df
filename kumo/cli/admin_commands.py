"""``kumo admin``: operations on a running API server that only administrators may do.

``kumo admin rotate-key [--drop-old]`` makes a new key the write key for Secrets encrypted
at rest and re-encrypts every stored Secret with it; ``--drop-old`` (or ``kumo admin
drop-old-keys`` later) then removes the old keys from the key file.
``kumo admin encryption`` shows the keys (names only) and what each encrypts.
"""

from __future__ import annotations

from typing import Any

import click

from kumo.cli.resource_commands import handles_errors, make_client


def _show(result: dict[str, Any]) -> None:
    click.echo(f"write key: {result.get('writeKey')}")
    for key in result.get("keys") or []:
        click.echo(f"  {key.get('name')}: {key.get('storedValues', 0)} stored values")
    if result.get("unencryptedValues"):
        click.echo(f"  not encrypted: {result['unencryptedValues']} stored values")
    if "reencrypted" in result:
        click.echo(f"re-encrypted: {result['reencrypted']} stored values")
    if result.get("dropped"):
        click.echo(f"dropped keys: {', '.join(result['dropped'])}")


@click.group()
def admin() -> None:
    """Administration of a running kumo (system:masters only)."""


@admin.command("rotate-key")
@click.option("--drop-old", is_flag=True, help="Then remove the old keys from the key file.")
@click.pass_context
@handles_errors
def rotate_key(ctx: click.Context, drop_old: bool) -> None:
    """Encrypt Secrets at rest with a new key; re-encrypt every stored Secret with it."""
    with make_client(ctx) as client:
        params = {"dropOld": "true"} if drop_old else None
        _show(client.request("POST", "/kumo/admin/rotate-key", params=params).json())


@admin.command("drop-old-keys")
@click.pass_context
@handles_errors
def drop_old_keys(ctx: click.Context) -> None:
    """Remove every key but the write key (after re-encrypting what still uses them)."""
    with make_client(ctx) as client:
        _show(client.request("POST", "/kumo/admin/drop-old-keys").json())


@admin.command("encryption")
@click.pass_context
@handles_errors
def encryption(ctx: click.Context) -> None:
    """The encryption keys (names only) and how many stored values each encrypts."""
    with make_client(ctx) as client:
        _show(client.request("GET", "/kumo/admin/encryption").json())


def register(group: click.Group) -> None:
    group.add_command(admin)
