"""``kumo images``: base images on this machine's Podman (node-local, no API server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kumo.node.images import (
    IMAGE_KEYS,
    BootstrapError,
    BootstrapResult,
    ImageRow,
    bootstrap,
    default_cache_dir,
    list_images,
)
from kumo.node.runtime import ContainerRuntimeError
from kumo.node.runtime.podman import PodmanRuntime

_NODE_LABEL = "kumo-images"


def _podman_options(func: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option(
            "--podman-url",
            envvar="KUMO_PODMAN_URL",
            default=None,
            help="Podman API socket (unix:///... or tcp://...). Default: start a private service.",
        ),
        click.option(
            "--storage-root",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Podman storage root of a node agent with its own storage (default: Podman's).",
        ),
        click.option(
            "--run-root",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Podman run root that goes with --storage-root.",
        ),
        click.option(
            "--tmp-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Podman tmpdir that goes with --storage-root.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _runtime(
    podman_url: str | None, storage_root: Path | None, run_root: Path | None, tmp_dir: Path | None
) -> PodmanRuntime:
    if podman_url and (storage_root or run_root or tmp_dir):
        raise click.UsageError(
            "--podman-url cannot be combined with --storage-root/--run-root/--tmp-dir"
        )
    return PodmanRuntime(
        _NODE_LABEL,
        socket_url=podman_url,
        storage_root=storage_root,
        run_root=run_root,
        tmp_dir=tmp_dir,
    )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def human_age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """kubectl-style columns: upper-case headers, left-aligned, three spaces apart."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = [
        "   ".join(
            str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)
        ).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


@click.group("images")
def images() -> None:
    """Base images on this machine's Podman (works without a registry)."""


@images.command("bootstrap")
@click.option("--force", is_flag=True, help="Rebuild images that already exist.")
@click.option(
    "--only",
    type=click.Choice(IMAGE_KEYS),
    multiple=True,
    help="Only this image (repeatable). Default: all of them.",
)
@click.option(
    "--pull", is_flag=True, help="Try the registry first; build locally only if that fails."
)
@click.option(
    "--no-cache", is_flag=True, help="Re-run mmdebstrap even if a cached root filesystem exists."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Where root filesystem tarballs are cached (default {default_cache_dir()}).",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress display; print only the result table."
)
@_podman_options
def bootstrap_command(
    force: bool,
    only: tuple[str, ...],
    pull: bool,
    no_cache: bool,
    cache_dir: Path | None,
    quiet: bool,
    podman_url: str | None,
    storage_root: Path | None,
    run_root: Path | None,
    tmp_dir: Path | None,
) -> None:
    """Build the busybox and python base images from Debian packages.

    busybox comes from Debian's busybox-static; python is Debian + python3 made
    with mmdebstrap. Both are tagged under localhost/kumo/ and under their
    docker.io/library names (busybox:latest, python:3.11-slim, ...), so
    manifests that use those images run without a registry.
    """
    runtime = _runtime(podman_url, storage_root, run_root, tmp_dir)
    console = Console(stderr=True)

    async def run() -> list[BootstrapResult]:
        async with runtime:
            if quiet:
                return await bootstrap(
                    runtime,
                    only=only or None,
                    force=force,
                    pull=pull,
                    cache_dir=cache_dir,
                    use_cache=not no_cache,
                )
            with Progress(
                TextColumn("{task.fields[image]:<8}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=console,
                transient=False,
            ) as bar:
                tasks: dict[str, TaskID] = {}

                def on_progress(key: str, stage: str, fraction: float) -> None:
                    if key not in tasks:
                        tasks[key] = bar.add_task(stage, total=100, image=key)
                    bar.update(tasks[key], completed=round(fraction * 100), description=stage)

                return await bootstrap(
                    runtime,
                    only=only or None,
                    force=force,
                    pull=pull,
                    cache_dir=cache_dir,
                    use_cache=not no_cache,
                    progress=on_progress,
                )

    try:
        results = asyncio.run(run())
    except (BootstrapError, ContainerRuntimeError) as err:
        raise click.ClickException(str(err)) from err
    rows = [
        [
            r.key,
            r.reference,
            r.image_id[:12],
            r.source,
            f"{r.seconds:.1f}s",
            ", ".join(r.names[1:]) or "-",
        ]
        for r in results
    ]
    click.echo(format_table(["IMAGE", "REFERENCE", "ID", "RESULT", "TIME", "ALSO TAGGED"], rows))


@images.command("list")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@_podman_options
def list_command(
    output: str,
    podman_url: str | None,
    storage_root: Path | None,
    run_root: Path | None,
    tmp_dir: Path | None,
) -> None:
    """List the images in this machine's Podman storage."""
    runtime = _runtime(podman_url, storage_root, run_root, tmp_dir)

    async def run() -> list[ImageRow]:
        async with runtime:
            return await list_images(runtime)

    try:
        rows = asyncio.run(run())
    except ContainerRuntimeError as err:
        raise click.ClickException(str(err)) from err
    if output == "json":
        payload = [
            {
                "image": row.reference,
                "id": row.id,
                "size": row.size_bytes,
                "created": row.created_at.isoformat() if row.created_at else None,
            }
            for row in rows
        ]
        click.echo(json.dumps(payload, indent=2))
        return
    now = datetime.now(UTC)
    click.echo(
        format_table(
            ["IMAGE", "ID", "SIZE", "CREATED"],
            [
                [
                    row.reference,
                    row.id[:12],
                    human_size(row.size_bytes),
                    human_age(row.created_at, now),
                ]
                for row in rows
            ],
        )
    )


def register(group: click.Group) -> None:
    group.add_command(images)


if __name__ == "__main__":  # until the command is wired into kumo/cli/main.py
    images(prog_name="kumo images")
