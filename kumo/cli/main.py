"""The ``kumo`` command."""

from __future__ import annotations

import logging
import os
import sys

import click

import kumo


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--kubeconfig",
    envvar="KUMOCONFIG",
    default=None,
    help="Client config file (default ~/.kumo/config).",
)
@click.option(
    "--context", "context_name", default=None, help="The context to use from the config file."
)
@click.option("--as", "as_user", default=None, help="Act as this user (needs impersonate).")
@click.option(
    "--as-group", "as_groups", multiple=True, help="Act with this group (repeatable; with --as)."
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(kumo.__version__, prog_name="kumo")
@click.pass_context
def cli(
    ctx: click.Context,
    kubeconfig: str | None,
    context_name: str | None,
    as_user: str | None,
    as_groups: tuple[str, ...],
    verbose: int,
) -> None:
    """kumo: deploy containers and functions on Podman, the Kubernetes way."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    if kubeconfig:
        os.environ["KUMOCONFIG"] = kubeconfig
    ctx.obj["context"] = context_name
    ctx.obj["as"] = as_user
    ctx.obj["as_groups"] = list(as_groups)


def _register() -> None:
    from kumo.cli import (
        admin_commands,
        agent_commands,
        auth_commands,
        controller_commands,
        gateway_commands,
        images_commands,
        pod_commands,
        resource_commands,
        scheduler_commands,
        server_commands,
        top_commands,
        workload_commands,
    )

    server_commands.register(cli)
    resource_commands.register(cli)
    controller_commands.register(cli)
    workload_commands.register(cli)
    images_commands.register(cli)
    agent_commands.register(cli)
    scheduler_commands.register(cli)
    gateway_commands.register(cli)
    pod_commands.register(cli)
    admin_commands.register(cli)
    auth_commands.register(cli)
    top_commands.register(cli)


_register()


def main() -> None:
    try:
        cli(prog_name="kumo")
    except KeyboardInterrupt:
        sys.exit(130)
