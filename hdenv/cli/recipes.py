"""Click commands `recipes` and `info`: what the recipe repositories offer.

Thin: repositories come from recipes/repos.py (a stack's own with --stack, then
config `repos`; the built-in repository when neither names any), text from
recipes/listing.py.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config import load_settings
from ..errors import UserError
from ..recipes.listing import info_text, rows, rows_text
from ..recipes.repos import BUILTIN, RepoRef, Repositories, parse_refs, site_refs
from ..tomlfile import read

STACK_OPTION = click.option(
    "--stack", "stack", type=click.Path(dir_okay=False, path_type=Path),
    help="Ask this stack file's repositories first.")


def _repositories(ctx: click.Context, stack: Path | None) -> Repositories:
    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    refs: list[RepoRef] = []
    if stack is not None:
        data, _text = read(stack.absolute(), "stack file")
        table = data.get("stack", {})
        if isinstance(table, dict) and "repos" in table:
            refs += parse_refs(table["repos"], stack.absolute().parent, str(stack), 0)
    refs += site_refs(settings)
    if not refs:
        refs = parse_refs([BUILTIN], Path("/"), "built-in", 0)
    return Repositories(refs)


@click.command("recipes")
@click.argument("text", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@STACK_OPTION
@click.pass_context
def recipes_cmd(ctx: click.Context, text: str, as_json: bool, stack: Path | None) -> None:
    """List the recipes the repositories offer (name or description containing TEXT)."""
    found = rows(_repositories(ctx, stack), text)
    if not found and not as_json:
        raise UserError(f"no recipe matches {text!r}" if text else "the repositories are empty")
    click.echo(rows_text(found, as_json), nl=False)


@click.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@STACK_OPTION
@click.pass_context
def info_cmd(ctx: click.Context, name: str, as_json: bool, stack: Path | None) -> None:
    """Show one recipe whole: versions, parameters, build system, the file itself."""
    repos = _repositories(ctx, stack)
    recipe = repos.find(name)
    if recipe is None:
        close = [n for n in repos.names() if name.lower() in n.lower()]
        hint = f"; did you mean {', '.join(close[:5])}?" if close else ""
        raise UserError(f"no recipe named {name!r}{hint}")
    click.echo(info_text(recipe, as_json), nl=False)
