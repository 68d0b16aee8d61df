"""``kumo scheduler``: run the scheduler alone against the API server of the current context."""

from __future__ import annotations

import asyncio

import click

from kumo.cli.component import component_client
from kumo.platform.scheduler import run_scheduler


async def _run(context: str | None, **options: object) -> None:
    async with component_client(context, "kumo-scheduler") as (client, stop):
        await run_scheduler(client, stop, **options)


@click.command("scheduler")
@click.option(
    "--scheduler-name",
    default="default-scheduler",
    show_default=True,
    help="Schedule pods whose spec.schedulerName is this.",
)
@click.option(
    "--percentage-of-nodes-to-score",
    type=click.IntRange(0, 100),
    default=0,
    show_default=True,
    help="Stop filtering once this share of nodes is feasible; 0 = adaptive (Kubernetes).",
)
@click.option(
    "--parallel-binds",
    type=click.IntRange(1, 1024),
    default=32,
    show_default=True,
    help="Bindings in flight at once.",
)
@click.option(
    "--initial-backoff",
    type=click.FloatRange(0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds before retrying a pod the first time.",
)
@click.option(
    "--max-backoff",
    type=click.FloatRange(0.0, min_open=True),
    default=10.0,
    show_default=True,
    help="Longest wait between retries of one pod, in seconds.",
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=False,
    show_default=True,
    help="Take a Lease in kube-system first, so only one scheduler acts at a time.",
)
@click.pass_context
def scheduler(
    ctx: click.Context,
    scheduler_name: str,
    percentage_of_nodes_to_score: int,
    parallel_binds: int,
    initial_backoff: float,
    max_backoff: float,
    leader_elect: bool,
) -> None:
    """Run the scheduler alone: it binds pending pods to nodes through the API server of the
    current context. Stops on SIGINT / SIGTERM."""
    context = (ctx.obj or {}).get("context")
    asyncio.run(
        _run(
            context,
            scheduler_name=scheduler_name,
            percentage_of_nodes_to_score=percentage_of_nodes_to_score,
            parallel_binds=parallel_binds,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            leader_elect=leader_elect,
        )
    )


def register(group: click.Group) -> None:
    group.add_command(scheduler)
