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


@click.command("create")
@click.argument("source", metavar="URL|FILE")
@click.option("--name", help="The recipe's name (default: from the file name).")
@click.option("--version", "version", help="The version (default: from the file name); on an"
              " existing recipe, adds this version.")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="The repository directory to write NAME.toml into.")
@click.pass_context
def create_cmd(ctx: click.Context, source: str, name: str | None, version: str | None,
               repo: Path) -> None:
    """Write a recipe for a release archive: stored, hashed, build system detected."""
    from ..recipes.create import create, known_names
    from ..store.layout import Store
    from ..store.sources import SourceStore

    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    repos = Repositories([*parse_refs([str(repo.absolute())], Path("/"), "--repo", 0),
                          *site_refs(settings), *parse_refs([BUILTIN], Path("/"), "", 0)])
    recipes = repos.all() if repo.is_dir() else Repositories(repos.refs[1:]).all()
    known = known_names((r.name for r in recipes), (v for r in recipes for v in r.provides))
    def open_sources() -> SourceStore:
        return SourceStore(Store(settings.store, settings.upstreams).ensure(), settings.mirrors)

    made = create(open_sources, source, repo, name=name, version=version, known=known)
    what = f"added version {made.version} to" if made.added_version else "wrote"
    click.echo(f"hdenv: {what} {made.path} ({made.build_system})", err=True)
    click.echo(str(made.path))


@click.command("import")
@click.argument("requirements", metavar="pylock.toml|requirements.txt",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The repository directory to write one recipe per pin into.")
@click.option("--stack", "stack", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a stack naming every pin (and a profile of them all).")
@click.option("--name", default="pydeps", show_default=True,
              help="The stack's and the profile's name.")
@click.pass_context
def import_cmd(ctx: click.Context, requirements: Path, repo: Path, stack: Path | None,
               name: str) -> None:
    """Pinned Python requirements (with hashes) as python recipes, built without network."""
    from ..recipes.pyimport import read_pins, write_import
    from ..validate import profile_name_problem

    problem = profile_name_problem(name)
    if problem:
        raise UserError(f"--name: {problem}")
    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    pins = read_pins(requirements, settings.mirrors)
    for path in write_import(pins, repo, stack, name):
        click.echo(str(path))
    click.echo(f"hdenv: {len(pins)} pinned package(s) as recipes in {repo}"
               + (f"; build them with `hdenv build {stack}`" if stack else ""), err=True)
