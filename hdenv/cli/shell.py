"""Click commands for shell integration; thin wrappers over shellcmd.

The lead registers them on the `cli` group (`for c in COMMANDS:
cli.add_command(c)`). load/unload/swap/purge exist here only to explain
themselves: the real work happens in the shell function via hdenv.fastload.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import HdenvError
from ..shell import shellcmd

F = TypeVar("F", bound=Callable[..., Any])

SETUP_HELP = """\
hdenv: error: `hdenv {cmd}` needs the hdenv shell function, which this shell does not have.
Add one of these to your shell's startup file and start a new shell:
  bash (~/.bashrc):          eval "$(hdenv init bash)"
  zsh (~/.zshrc):            eval "$(hdenv init zsh)"
  fish (config.fish):        hdenv init fish | source
  tcsh (~/.tcshrc):          eval "`hdenv init tcsh`"
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


def _store() -> Any:
    from ..config import load_settings
    from ..store.layout import Store

    settings = load_settings()
    return Store(settings.store, settings.upstreams)


@click.command("init")
@click.argument("shell", required=False)
@click.option("--no-completion", is_flag=True, help="Do not load the completion script.")
@_errors
def init_cmd(shell: str | None, no_completion: bool) -> None:
    """Print shell integration code (bash, zsh, fish, tcsh; detected when omitted)."""
    click.echo(shellcmd.init_code(shell, completion=not no_completion), nl=False)


def _needs_function(cmd: str) -> click.Command:
    @click.command(cmd, context_settings={"ignore_unknown_options": True},
                   help=f"{cmd.capitalize()} profiles (runs through the shell function).")
    @click.argument("refs", nargs=-1, type=click.UNPROCESSED)
    def command(refs: tuple[str, ...]) -> None:
        click.echo(SETUP_HELP.format(cmd=cmd), err=True, nl=False)
        sys.exit(2)

    return command


load_cmd = _needs_function("load")
unload_cmd = _needs_function("unload")
swap_cmd = _needs_function("swap")
purge_cmd = _needs_function("purge")


@click.command("loaded")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_errors
def loaded_cmd(as_json: bool) -> None:
    """What is loaded in this shell, in load order, with hashes."""
    click.echo(shellcmd.loaded_text(shellcmd.loaded_records(), as_json), nl=False)


@click.command("avail")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--refs", is_flag=True, hidden=True,
              help="Names and hashes, one per line (for the completion scripts).")
@_errors
def avail_cmd(as_json: bool, refs: bool) -> None:
    """Named profiles and their generations."""
    import json

    store = _store()
    if refs:
        click.echo("".join(r + "\n" for r in shellcmd.complete_refs(store)), nl=False)
    elif as_json:
        click.echo(json.dumps(shellcmd.avail(store), indent=2))
    else:
        click.echo(shellcmd.avail_text(shellcmd.avail(store)), nl=False)


@click.command("env")
@click.argument("ref")
@click.option("--shell", "shell_name", default=None,
              help="bash, zsh, fish or tcsh (default: the detected shell).")
@_errors
def env_cmd(ref: str, shell_name: str | None) -> None:
    """Print the code that `hdenv load REF` would evaluate, without evaluating it."""
    name = shell_name or os.environ.get("HDENV_SHELL_FUNCTION") or shellcmd.detect_shell()
    click.echo(shellcmd.env_code(ref, name, _store()), nl=False)


COMMANDS = [init_cmd, load_cmd, unload_cmd, swap_cmd, purge_cmd, loaded_cmd, avail_cmd,
            env_cmd]
