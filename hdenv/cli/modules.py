"""`hdenv modulefiles`: thin click layer over `hdenv.modules.generate`."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import load_settings
from ..store.layout import Store


@click.command("modulefiles")
@click.option("--format", "fmt", type=click.Choice(["lmod", "tcl"]), default="lmod",
              show_default=True, help="Lua for Lmod, or #%Module Tcl for Environment Modules.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="The tree to (re)write; replaced as a whole.")
@click.option("--spider-cache", is_flag=True,
              help="Also build Lmod's spider cache with update_lmod_system_cache_files.")
@click.argument("refs", nargs=-1)
@click.pass_context
def modulefiles(ctx: click.Context, fmt: str, out: Path, spider_cache: bool,
                refs: tuple[str, ...]) -> None:
    """Write modulefiles for every named profile (or REFs) and their artifacts.

    Prints the directory to `module use`.
    """
    from ..modules.generate import write_modulefiles

    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    store = Store(settings.store, settings.upstreams)  # user profiles may use site artifacts
    outcome = write_modulefiles(store, out, fmt, list(refs), spider_cache=spider_cache)
    for warning in outcome.warnings:
        click.echo(f"hdenv: warning: {warning}", err=True)
    click.echo(f"wrote {outcome.modules} {fmt} modules ({outcome.profiles} profile"
               f" generation(s)) to {out}", err=True)
    if outcome.lmodrc is not None:
        click.echo(f"spider cache built; Lmod uses it with LMOD_RC={outcome.lmodrc}", err=True)
    click.echo(str(outcome.modulepath))
