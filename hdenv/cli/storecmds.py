"""Click commands for store health: `gc`, `du`, `pin`/`unpin`, `mirror`.

Thin: parse, call `store.gc`/`store.du`/`store.gcroots`/`store.sources`, print.
Results (what was removed, sizes) go to stdout, summaries to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..config import load_settings
from ..showtext import human_size
from ..store import du as du_mod
from ..store import gc as gc_mod
from ..store import gcroots
from ..store.layout import Store


def _store(ctx: click.Context) -> Store:
    obj = ctx.find_root().obj or {}
    return Store(load_settings(store=obj.get("store")).store)


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--sources", is_flag=True, help="Also drop sources that no live spec needs.")
@click.option("--max-freed", metavar="SIZE", help="Stop once this much is freed (500M, 2G).")
@click.option("--runtime-only", is_flag=True,
              help="Also remove what current generations were built with (compilers, tools).")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, sources: bool, max_freed: str | None,
       runtime_only: bool) -> None:
    """Remove what no named profile generation, pin or running build uses."""
    limit = gc_mod.parse_size(max_freed) if max_freed is not None else None

    def show(item: gc_mod.Item) -> None:
        # through stdout's own buffer: a line at a time on a terminal, blocks into a pipe
        # or file (click.echo's write, flush and isatty per line were 3,000 system calls
        # for 1,000 artifacts)
        sys.stdout.write(f"{item.kind} {item.ident} {human_size(item.size)}\n")

    result = gc_mod.collect(_store(ctx), dry_run=dry_run, sources=sources, max_freed=limit,
                            log=lambda m: click.echo(m, err=True), on_item=show,
                            runtime_only=runtime_only)
    counts = ", ".join(f"{result.count(k)} {k}(s)" for k in
                       ("profile", "artifact", "leftover", "spec", "source") if result.count(k))
    verb = "would free" if dry_run else "freed"
    early = f" (stopped at --max-freed {max_freed})" if result.stopped_early else ""
    kept = result.kept
    click.echo(f"{verb} {human_size(result.freed)}: {counts or 'nothing to remove'}{early};"
               f" kept {len(kept.profiles)} profile(s), {len(kept.artifacts)} artifact(s)"
               + (f", {kept.running} running build(s)" if kept.running else ""), err=True)


@click.command("du")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def du(ctx: click.Context, as_json: bool) -> None:
    """Size of the store by artifacts, profiles, sources, logs, and what gc would free."""
    usage = du_mod.disk_usage(_store(ctx))
    if as_json:
        click.echo(json.dumps(usage, indent=2, sort_keys=True))
        return
    for part, info in usage["parts"].items():
        click.echo(f"{part:<10} {human_size(info['bytes']):>10}  {info['count']} entries")
    click.echo(f"{'total':<10} {human_size(usage['total']):>10}")
    click.echo(f"gc would free {human_size(usage['gc_would_free'])}"
               f" ({human_size(usage['gc_sources_would_free'])} with --sources)")


@click.command("pin")
@click.argument("ref", required=False)
@click.pass_context
def pin(ctx: click.Context, ref: str | None) -> None:
    """Keep REF (and what it needs) from gc; without REF, list the pins."""
    store = _store(ctx)
    if ref is None:
        for p in gcroots.list_pins(store):
            click.echo(f"{p.hash} {p.kind} {p.ident}")
        return
    pinned = gcroots.pin(store, ref)
    click.echo(f"pinned {pinned.kind} {pinned.ident}", err=True)


@click.command("unpin")
@click.argument("ref")
@click.pass_context
def unpin(ctx: click.Context, ref: str) -> None:
    """Let gc remove REF again once nothing else keeps it."""
    removed = gcroots.unpin(_store(ctx), ref)
    click.echo(f"unpinned {removed.kind} {removed.ident}", err=True)


@click.command("mirror")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def mirror(ctx: click.Context, directory: Path) -> None:
    """Write every stored source into DIRECTORY as NAME and sha256/HEX (incremental)."""
    from ..store.sources import SourceStore

    store = _store(ctx)
    count = SourceStore(store).write_mirror(directory)
    click.echo(f"{count} source(s) in {directory}", err=True)
