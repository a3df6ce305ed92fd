"""Click commands for shell integration; thin wrappers over shellcmd and catalog.

Imported by the `cli` group (group.py) when one of its commands is asked for. load, unload,
swap and purge exist here to show their usage (`--help`) and to explain the
shell function when it is missing: the real work happens in the function via
hdenv.shell.fastload. avail, loaded and spider usually run on that fast path
too; these commands print exactly the same (both call `catalog.run`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import HdenvError, UserError
from ..shell import catalog, shellcmd
from .options import output_options

F = TypeVar("F", bound=Callable[..., Any])

SETUP_HELP = """\
hdenv: error: `hdenv {cmd}` needs the hdenv shell function, which this shell does not have.
Add one of these to your shell's startup file and start a new shell:
  bash (~/.bashrc):          eval "$(hdenv init bash)"
  zsh (~/.zshrc):            eval "$(hdenv init zsh)"
  fish (config.fish):        hdenv init fish | source
  tcsh (~/.tcshrc):          eval "`hdenv init tcsh`"
(`hdenv init SHELL --write` writes the code to a file to source instead: faster.)
To see the code a load would run, use: hdenv env REF
"""


def _errors(func: F) -> F:
    """One `hdenv: error:` line and the contract's exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HdenvError as e:
            click.echo(f"hdenv: error: {e.render()}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


def _store(ctx: click.Context) -> Any:
    """The store the global `--store` (or HDENV_STORE, config.toml) names."""
    from ..config import load_settings
    from ..store.layout import Store

    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    return Store(settings.store, settings.upstreams)


def visible_commands(ctx: click.Context) -> list[str]:
    """Every subcommand a user may type, from the group itself: completion offers these."""
    group = ctx.find_root().command
    assert isinstance(group, click.Group)
    found = [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]
    return sorted(name for name, cmd in found if cmd is not None and not cmd.hidden)


@click.command("init")
@click.argument("shell", required=False)
@click.option("--no-completion", is_flag=True, help="Do not load the completion script.")
@click.option("--write", is_flag=True,
              help="Write the code to a file in your data dir and print its path; source that"
                   " file from your shell's startup file (no Python runs at shell start).")
@click.option("--system", is_flag=True,
              help="Write /etc/profile.d/hdenv.sh (bash, zsh), /etc/profile.d/hdenv.csh and"
                   " /etc/fish/conf.d/hdenv.fish for every user's login shells (batch jobs"
                   " with an empty environment); print each path.")
@click.option("--prefix", type=click.Path(file_okay=False), default="/", show_default=True,
              help="With --system: write under this directory instead of /.")
@click.pass_context
@_errors
def init_cmd(ctx: click.Context, shell: str | None, no_completion: bool, write: bool,
             system: bool, prefix: str) -> None:
    """Print shell integration code (bash, zsh, fish, tcsh; detected when omitted)."""
    commands = visible_commands(ctx)
    if system:
        if shell or write:
            raise click.UsageError("--system writes every shell's file: no SHELL, no --write")
        from pathlib import Path

        for path in shellcmd.write_system(Path(prefix), commands):
            click.echo(str(path))
        return
    if write:
        click.echo(str(shellcmd.write_init(shell, completion=not no_completion,
                                           commands=commands)))
        return
    click.echo(shellcmd.init_code(shell, completion=not no_completion, commands=commands),
               nl=False)


def _needs_function(cmd: str, metavar: str, nargs: int, summary: str) -> click.Command:
    """The command as `--help` shows it; run, it explains how to get the shell function."""

    def command(**_: Any) -> None:
        click.echo(SETUP_HELP.format(cmd=cmd), err=True, nl=False)
        sys.exit(2)

    if nargs:
        command = click.argument("refs", nargs=nargs, metavar=metavar, required=False,
                                 type=click.UNPROCESSED)(command)
    return click.command(cmd, help=summary + "\n\nRuns through the shell function"
                         " (see `hdenv init`).",
                         context_settings={"ignore_unknown_options": True})(command)


load_cmd = _needs_function("load", "REF...", -1,
                           "Load profiles: a name, NAME/N, a hash (prefix) or an artifact id.")
unload_cmd = _needs_function("unload", "[--force] REF...", -1,
                             "Unload loaded profiles (NAME, NAME/N or hash); the shell is"
                             " as it was, but for what you changed by hand. Sticky profiles"
                             " stay unless --force.")
swap_cmd = _needs_function("swap", "OLD NEW", 2, "Unload OLD and load NEW in one step.")
purge_cmd = _needs_function("purge", "[--force]", -1,
                            "Unload everything hdenv loaded but sticky profiles (`sticky ="
                            " true` in the stack file, or the config's `sticky = [...]`);"
                            " --force unloads those too.")
def _catalog(ctx: click.Context, cmd: str, args: list[str], color: str = "auto") -> None:
    """Print as the fast path prints (same text, width, colour and pager)."""
    from ..shell import terminal

    roots = _store(ctx).search_roots() if cmd in ("avail", "spider") else []
    width = terminal.width(os.environ) if cmd == "avail" else terminal.DEFAULT_WIDTH
    text = catalog.run(cmd, args, os.environ, roots, width)
    terminal.write(text, os.environ, terminal.Output(color))


@click.command("loaded")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (ref, name, generation, hash, ...).")
@click.option("--hash", "as_hash", is_flag=True,
              help="Print one profile hash equal to everything loaded (made in the store):"
                   " `hdenv load HASH` elsewhere gives the same state.")
@output_options
@click.pass_context
@_errors
def loaded_cmd(ctx: click.Context, as_json: bool, as_hash: bool, terse: bool, color: str,
               redirect: bool) -> None:
    """What is loaded in this shell, in load order, as NAME/N (also: `hdenv list`)."""
    if as_hash:
        from ..shell.statehash import loaded_state

        click.echo(loaded_state(_store(ctx), os.environ))
        return
    _catalog(ctx, "loaded", ["--json"] * as_json + ["--terse"] * terse, color)


@click.command("avail")
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--refs", is_flag=True, hidden=True,
              help="Names and NAME/N, one per line (for the completion scripts).")
@click.option("--packages", is_flag=True, hidden=True,
              help="With --refs: packages by name too (what `load` takes).")
@click.option("--show-hidden", is_flag=True,
              help="Also profiles named `.NAME` or with `hidden = true`.")
@output_options
@click.pass_context
@_errors
def avail_cmd(ctx: click.Context, texts: tuple[str, ...], as_json: bool, refs: bool,
              packages: bool, show_hidden: bool, terse: bool, color: str,
              redirect: bool) -> None:
    """Named profiles: description, generations (D: default, L: loaded) and packages.

    TEXT keeps the profiles whose name, description or packages contain it.
    """
    flags = (["--json"] * as_json + ["--refs"] * refs + ["--packages"] * packages
             + ["--terse"] * terse + ["--show-hidden"] * show_hidden)
    _catalog(ctx, "avail", [*flags, "--", *texts], color)


@click.command("spider")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--show-hidden", is_flag=True, help="Also hidden profiles' packages.")
@output_options
@click.pass_context
@_errors
def spider_cmd(ctx: click.Context, text: str, as_json: bool, show_hidden: bool, terse: bool,
               color: str, redirect: bool) -> None:
    """Which profiles (any generation) contain a package, and how to load them.

    TEXT is part of a package name, or NAME/VERSION.
    """
    flags = ["--json"] * as_json + ["--terse"] * terse + ["--show-hidden"] * show_hidden
    _catalog(ctx, "spider", [*flags, "--", text], color)


@click.command("env")
@click.argument("ref")
@click.option("--shell", "shell_name", default=None,
              help="bash, zsh, fish or tcsh (default: the detected shell).")
@click.pass_context
@_errors
def env_cmd(ctx: click.Context, ref: str, shell_name: str | None) -> None:
    """Print the code that `hdenv load REF` would evaluate, without evaluating it."""
    name = shell_name or os.environ.get("HDENV_SHELL_FUNCTION") or shellcmd.detect_shell()
    click.echo(shellcmd.env_code(ref, name, _store(ctx)), nl=False)


@click.command("commands", hidden=True)
@click.pass_context
def commands_cmd(ctx: click.Context) -> None:
    """The subcommands, one per line (completion scripts sourced without `hdenv init`)."""
    click.echo("\n".join(visible_commands(ctx)))


reset_cmd = _needs_function("reset", "[--force]", -1,
                            "Purge, then load the config's `default-load = [REF, ...]`"
                            " (as Lmod's module reset).")
ml_cmd = _needs_function("ml", "[REF | -REF | COMMAND ARGS]...", -1,
                         "Lmod's ml: alone it lists what is loaded; `ml A -B` loads A and"
                         " unloads B; `ml av`, `ml spider X`, `ml save`, `ml restore`, ... run"
                         " that command. `hdenv init` also defines `ml` itself.")
use_cmd = _needs_function("use", "STORE...", -1,
                          "Add STORE (a colleague's, a project's) as an upstream store for"
                          " this shell only (HDENV_USE).")
unuse_cmd = _needs_function("unuse", "STORE...", -1, "Stop using STORE in this shell.")
restore_cmd = _needs_function("restore", "[NAME] [--latest]", -1,
                              "Unload everything, then load collection NAME (default:"
                              " `default`) exactly as saved, by profile hash; --latest loads"
                              " today's default of each name instead and says what changed.")


@click.command("save")
@click.argument("name", default="default")
@_errors
def save_cmd(name: str) -> None:
    """Save what is loaded as collection NAME (default: `default`), by exact profile hash."""
    from ..shell import collection

    records = catalog.loaded_records(os.environ)
    path = collection.save(os.environ, name, records)
    what = " ".join(r.ref for r in records) or "nothing"
    click.echo(f"hdenv: saved {what} as collection {name!r} ({path})", err=True)


@click.command("savelist")
@output_options
@_errors
def savelist_cmd(terse: bool, color: str, redirect: bool) -> None:
    """The saved collections."""
    from ..shell import collection, terminal

    text = collection.savelist_text(collection.names(os.environ), terse)
    terminal.write(text, os.environ, terminal.Output(color))


@click.command("describe")
@click.argument("name", default="default")
@_errors
def describe_cmd(name: str) -> None:
    """What collection NAME loads, in order, with each profile's hash."""
    from ..shell import collection

    click.echo(collection.describe_text(name, collection.read(os.environ, name)), nl=False)


@click.command("disable")
@click.argument("name")
@_errors
def disable_cmd(name: str) -> None:
    """Delete collection NAME."""
    from ..shell import collection

    path = collection.disable(os.environ, name)
    click.echo(f"hdenv: removed collection {name!r} ({path})", err=True)


def _finding(ctx: click.Context) -> Any:
    from ..store.index import Index

    return Index(_store(ctx).search_roots())


@click.command("whatis")
@click.argument("ref")
@click.pass_context
@_errors
def whatis_cmd(ctx: click.Context, ref: str) -> None:
    """One line about REF: a profile (NAME, NAME/N) and/or a package (NAME, NAME/VERSION)."""
    from ..shell import finding

    click.echo(finding.whatis_text(finding.lookup(_finding(ctx), ref)), nl=False)


@click.command("help")
@click.argument("ref")
@click.pass_context
@_errors
def help_cmd(ctx: click.Context, ref: str) -> None:
    """The stack file's help text of REF, with its description, homepage and how to load it."""
    from ..shell import finding, terminal

    text = finding.help_text(finding.lookup(_finding(ctx), ref))
    terminal.write(text, os.environ)


@click.command("keyword")
@click.argument("text")
@click.pass_context
@_errors
def keyword_cmd(ctx: click.Context, text: str) -> None:
    """Profiles and packages whose name, description or help text contain TEXT."""
    from ..errors import UserError
    from ..shell import finding

    found = finding.keyword_data(_finding(ctx), text)
    if not found:
        raise UserError(f"nothing mentions {text!r} (names, descriptions, help texts)")
    click.echo(finding.whatis_text(found), nl=False)


# Lmod's try-load, is-loaded, is-avail, refresh and update (group.LAZY_COMMANDS)
try_load_cmd = _needs_function("try-load", "REF...", -1,
                               "Load what exists of REF...; the others are skipped without a"
                               " word (Lmod's try-load).")


refresh_cmd = _needs_function("refresh", "", 0,
                              "Load everything loaded again, as it is (a variable changed by"
                              " hand is set again); the load order stays.")
update_cmd = _needs_function("update", "", 0,
                             "Load each profile loaded by name again as today's default"
                             " generation, saying what changed (Lmod's update).")


@click.command("is-loaded")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@_errors
def is_loaded_cmd(refs: tuple[str, ...]) -> None:
    """Exit 0 if every REF (NAME, NAME/N or hash) is loaded in this shell, else 1; no output."""
    from ..shell.fastload import Session

    session = Session(os.environ, list)
    sys.exit(0 if all(session.is_loaded(r) for r in refs) else 1)


@click.command("is-avail")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.pass_context
@_errors
def is_avail_cmd(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Exit 0 if every REF can be loaded (a profile, NAME/N, a hash, an artifact or a
    package by name), else 1."""
    from ..shell import byname

    store = _store(ctx)
    roots = [str(s.root) for s in store.chain()]

    def known(ref: str) -> bool:
        try:
            store.resolve(ref)
        except UserError:
            return byname.available(roots, ref)
        return True

    sys.exit(0 if all(known(r) for r in refs) else 1)

