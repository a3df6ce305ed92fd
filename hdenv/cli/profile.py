"""Click commands for generations, diff and graph (registered by `hdenv.cli`).

Thin on purpose: parse, call `profiles`/`specdiff`, print. Core errors
propagate to the main group, which renders them as one `hdenv: error:` line.
"""

from __future__ import annotations

import json

import click

from ..config import load_settings
from ..profile import profiles, specdiff
from ..sanitize import printable
from ..store.layout import Store


def _store(ctx: click.Context) -> Store:
    """The store chosen by the root group's --store, HDENV_STORE or config.toml."""
    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    return Store(settings.store, settings.upstreams)


@click.group("profile")
def profile() -> None:
    """Generations of named profiles: list, roll back, prune."""


@profile.command("generations")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of columns.")
@click.pass_context
def generations(ctx: click.Context, name: str, as_json: bool) -> None:
    """List NAME's generations: NUMBER HASH CREATED [current]."""
    gens = profiles.list_generations(_store(ctx), name)
    if as_json:
        rows = [{"number": g.number, "hash": g.hash, "created": g.created,
                 "current": g.current, "path": str(g.path)} for g in gens]
        click.echo(json.dumps(rows, indent=2))
        return
    for g in gens:
        click.echo(f"{g.number} {g.hash} {g.created}{' current' if g.current else ''}")


@profile.command("rollback")
@click.argument("name")
@click.option("--to", "to", type=int, default=None,
              help="Generation number (default: the one before the current).")
@click.pass_context
def rollback(ctx: click.Context, name: str, to: int | None) -> None:
    """Make an older generation of NAME current (prints NAME HASH)."""
    store = _store(ctx)
    number = profiles.rollback(store, name, to)
    target = store.name_current(name)
    click.echo(f"{name}: now at generation {number}", err=True)
    click.echo(f"{name} {target.name if target else ''}")


@profile.command("prune")
@click.argument("name")
@click.option("--keep", type=int, required=True, help="How many newest generations to keep.")
@click.pass_context
def prune(ctx: click.Context, name: str, keep: int) -> None:
    """Drop old generations of NAME (the current one always stays); `gc` frees space."""
    dropped = profiles.prune(_store(ctx), name, keep)
    listing = ", ".join(str(n) for n in dropped) or "none"
    click.echo(f"{name}: removed generation(s) {listing}", err=True)


@click.command("diff")
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--exit-code", is_flag=True, help="Exit 1 if they differ (as `git diff`).")
@click.pass_context
def diff(ctx: click.Context, ref_a: str, ref_b: str, exit_code: bool) -> None:
    """Explain why two profiles or two artifacts differ, down to the spec field."""
    lines = specdiff.diff(_store(ctx), ref_a, ref_b)
    if not lines:
        click.echo(f"{ref_a} and {ref_b} are identical", err=True)
    for line in lines:
        click.echo(printable(line))
    if exit_code and lines:
        ctx.exit(1)


@click.command("graph")
@click.argument("ref")
@click.pass_context
def graph(ctx: click.Context, ref: str) -> None:
    """Print REF's dependency graph as DOT (dashed edges: build-only dependencies)."""
    click.echo(specdiff.graph_dot(_store(ctx), ref), nl=False)
