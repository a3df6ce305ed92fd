"""Click commands for carrying a software state: `export`, `reproduce`, `report`.

Thin: parse, call `hdenv.exchange`, print. Results on stdout (`NAME HASH` after
a reproduce, as after a build; the bundle path after an export), messages and
progress on stderr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..config import Settings, load_settings
from ..sanitize import printable
from ..showtext import human_size
from ..store.layout import Store


def _settings(ctx: click.Context, jobs: int | None = None) -> Settings:
    obj = ctx.find_root().obj or {}
    return load_settings(store=obj.get("store"), jobs=jobs)


@click.command("export")
@click.argument("ref")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Bundle file to write (a directory: DIR/HASH.tar).")
@click.option("--with-sources", is_flag=True, help="Include the source archives.")
@click.option("--with-artifacts", is_flag=True,
              help="Include the built artifacts (no build needed to reproduce).")
@click.pass_context
def export(ctx: click.Context, ref: str, output: Path, with_sources: bool,
           with_artifacts: bool) -> None:
    """Write REF's specs (and sources, artifacts) as a bundle `hdenv reproduce` reads."""
    from ..provenance.export import export as run

    settings = _settings(ctx)
    store = Store(settings.store)
    result = run(store, ref, output, with_sources=with_sources,
                 with_artifacts=with_artifacts, mirrors=settings.mirrors,
                 log=lambda m: click.echo(m, err=True))
    click.echo(f"{result.nodes} spec(s), {result.sources} source(s), {result.artifacts}"
               f" artifact(s): {human_size(result.size)}", err=True)
    click.echo(str(result.path))


@click.command("reproduce")
@click.argument("bundle")
@click.option("--from", "from_", metavar="DIR|URL",
              help="Where to find BUNDLE by hash: another store, a directory of bundles,"
                   " a URL prefix serving HASH.tar, or a binary cache (nothing is built).")
@click.option("--allow-host-drift", is_flag=True,
              help="Use this machine's host software where it differs (the hash changes).")
@click.option("--name", help="Profile name (default: the original name).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Packages built at once.")
@click.pass_context
def reproduce(ctx: click.Context, bundle: str, from_: str | None, allow_host_drift: bool,
              name: str | None, jobs: int | None) -> None:
    """Set this machine up in the state of BUNDLE (a bundle file or a hash); print NAME HASH."""
    from ..provenance.reproduce import reproduce as run

    result = run(_settings(ctx, jobs), bundle, from_=from_, allow_host_drift=allow_host_drift,
                 name=name, jobs=jobs)
    parts = [f"{len(result.installed)} installed from {result.source}"] \
        if result.installed else []
    parts.append(f"{len(result.built)} built")
    if result.captured:
        parts.append(f"{len(result.captured)} host captured")
    click.echo(", ".join(parts), err=True)
    if result.ident != result.expected:
        click.echo(f"hdenv: host drift allowed: the result is {result.ident}, not the"
                   f" reported {result.expected}", err=True)
    if result.kind != "profile":
        click.echo(result.ident)
        return
    if result.new_generation:
        click.echo(f"profile {result.name}: generation {result.generation}", err=True)
    click.echo(f"{result.name} {result.ident}")


@click.command("report")
@click.argument("refs", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def report(ctx: click.Context, refs: tuple[str, ...], as_json: bool) -> None:
    """A block for bug reports: hashes, artifacts, host facts, the reproduce command.

    Without REF: the profiles loaded in this shell.
    """
    from ..provenance.report import format_report
    from ..provenance.report import report as make
    from ..shell.catalog import loaded_data

    data = make(Store(_settings(ctx).store), list(refs), [] if refs else loaded_data(os.environ))
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(printable(format_report(data)), nl=False)
