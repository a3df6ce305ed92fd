"""Commands for building through a batch system; `build-node` is what a job runs."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import load_settings
from ..store.layout import Store


@click.command("build-node", hidden=True)
@click.argument("artifact_id")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1,
              help="HDENV_JOBS for the build: the cores the job was given.")
@click.option("--result", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the outcome for the submitting hdenv (JSON).")
@click.option("--strict-links/--no-strict-links", default=None,
              help="As the submitting side's strict-links setting (default: this node's).")
@click.option("--upstream", "upstreams", multiple=True, type=click.Path(path_type=Path),
              help="The submitting side's upstream stores (default: this node's setting).")
@click.pass_context
def build_node_cmd(ctx: click.Context, artifact_id: str, jobs: int, result: Path | None,
                   strict_links: bool | None, upstreams: tuple[Path, ...]) -> None:
    """Build one stored spec into the store (run inside a batch job; internal)."""
    from ..build.builder import build_options
    from ..cluster.node import build_stored

    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    options = build_options(settings)
    if strict_links is not None:
        options.strict_links = strict_links
    options.note = lambda message: click.echo(f"hdenv: {message}", err=True)
    store = Store(settings.store, upstreams or settings.upstreams)
    built = build_stored(store, artifact_id, jobs=jobs, result=result, options=options)
    click.echo(f"{'built' if built else 'already present'}: {artifact_id}", err=True)
