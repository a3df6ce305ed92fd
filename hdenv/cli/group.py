"""The click command line: a thin layer that parses, calls the core, prints.

Results go to stdout (stable formats for scripts), messages to stderr. Every
`HdenvError` becomes one `hdenv: error: ...` line and its exit code; a
traceback only with `--debug`.

Only the commands defined here are imported with the group: every other
subcommand lives in a sibling module that `LAZY_COMMANDS` names and is
imported when it is asked for (click's LazyGroup pattern for large CLIs), so
`hdenv config` does not pay for the build, cache and container code. `main.py`
(the entry point) answers the read-only commands without importing click at all.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..config import EXECUTORS, Settings, load_settings
from ..errors import HdenvError, Interrupted, UserError
from ..oserrors import describe as describe_os_error
from .options import output_options
from .plain import list_text, show_text

TYPE_CHECKING = False
if TYPE_CHECKING:  # the store's modules are imported by the commands that use them
    from ..store.layout import Store

# subcommand name -> (module under hdenv.cli, attribute): imported on first use
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("shell", "init_cmd"), "load": ("shell", "load_cmd"),
    "unload": ("shell", "unload_cmd"), "swap": ("shell", "swap_cmd"),
    "purge": ("shell", "purge_cmd"), "loaded": ("shell", "loaded_cmd"),
    "avail": ("shell", "avail_cmd"), "env": ("shell", "env_cmd"),
    "spider": ("shell", "spider_cmd"), "commands": ("shell", "commands_cmd"),
    "use": ("shell", "use_cmd"), "unuse": ("shell", "unuse_cmd"), "ml": ("shell", "ml_cmd"),
    "reset": ("shell", "reset_cmd"), "restore": ("shell", "restore_cmd"),
    "save": ("shell", "save_cmd"), "savelist": ("shell", "savelist_cmd"),
    "describe": ("shell", "describe_cmd"), "disable": ("shell", "disable_cmd"),
    "whatis": ("shell", "whatis_cmd"), "help": ("shell", "help_cmd"),
    "keyword": ("shell", "keyword_cmd"), "try-load": ("shell", "try_load_cmd"),
    "is-loaded": ("shell", "is_loaded_cmd"), "is-avail": ("shell", "is_avail_cmd"),
    "refresh": ("shell", "refresh_cmd"), "update": ("shell", "update_cmd"),
    "profile": ("profile", "profile"), "diff": ("profile", "diff"),
    "graph": ("profile", "graph"),
    "config": ("site", "config_cmd"), "store": ("site", "store_group"),
    "usage": ("site", "usage_group"),
    "gc": ("storecmds", "gc"), "du": ("storecmds", "du"), "pin": ("storecmds", "pin"),
    "unpin": ("storecmds", "unpin"), "mirror": ("storecmds", "mirror"),
    "cache": ("cache", "cache"), "push": ("cache", "push"),
    "build-node": ("cluster", "build_node_cmd"),
    "export": ("provenance", "export"), "reproduce": ("provenance", "reproduce"),
    "report": ("provenance", "report"),
    "modulefiles": ("modules", "modulefiles"), "pack": ("containers", "pack"),
    "recipes": ("recipes", "recipes_cmd"), "info": ("recipes", "info_cmd"),
    "create": ("recipes", "create_cmd"), "import": ("recipes", "import_cmd"),
}


class HdenvGroup(click.Group):
    """Maps core errors and click usage errors to the contract's exit codes; loads
    the subcommands of `LAZY_COMMANDS` only when they are asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every subcommand, sorted as click sorts them, without importing any."""
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module the first time it is asked for."""
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[cmd_name]  # `__import__`: -X importtime sees it
            command = getattr(__import__(f"{__package__}.{module}", fromlist=[attr]), attr)
            assert isinstance(command, click.Command) and command.name == cmd_name
            self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """`hdenv --help`'s list from `commandindex` (generated from the commands, and
        checked against them by the tests), so the help imports none of them."""
        from .commandindex import INDEX

        loaded = self.get_command

        def listed(ctx: click.Context, name: str) -> click.Command | None:
            if name in self.commands or name not in INDEX:
                return loaded(ctx, name)
            return _stand_in(name, INDEX[name])

        self.get_command = listed  # type: ignore[method-assign,assignment]  # click's layout, our rows
        try:
            super().format_commands(ctx, formatter)
        finally:
            del self.get_command

    def all_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        """Name -> command for every subcommand (imports them all: completion, tests)."""
        found = {name: self.get_command(ctx, name) for name in self.list_commands(ctx)}
        return {name: cmd for name, cmd in found.items() if cmd is not None}

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Click's own error display is three lines; the contract wants one, exit 2."""
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.UsageError as e:
            no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())
            if isinstance(e, no_args) and e.ctx is not None:  # `hdenv` alone: its help
                click.echo(e.ctx.get_help())
                sys.exit(0)
            where = e.ctx.command_path if e.ctx is not None else "hdenv"
            click.echo(f"hdenv: error: {e.format_message()} (see `{where} --help`)", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"hdenv: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("hdenv: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """`hdenv --help | head -1` (help prints while parsing): quiet, exit 0, as below."""
        try:
            return super().parse_args(ctx, args)
        except BrokenPipeError:
            from ..shell.fastload import quiet_broken_pipe

            quiet_broken_pipe()
            raise  # not reached: quiet_broken_pipe exits

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HdenvError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"hdenv: error: {e.render()}", err=True)
            ctx.exit(e.exit_code)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except BrokenPipeError:  # `hdenv config | head -1`: the reader has all it wanted
            from ..shell.fastload import quiet_broken_pipe

            quiet_broken_pipe()
        except KeyboardInterrupt:
            click.echo("hdenv: interrupted", err=True)
            ctx.exit(130)
        except Interrupted as e:  # a build stopped by Ctrl-C, SIGTERM or SIGHUP
            with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
                click.echo(f"hdenv: {e}", err=True)
            ctx.exit(e.exit_code)
        except Exception as e:  # a bug: still one line, with the way to see more
            if ctx.obj and ctx.obj.get("debug"):
                raise
            # not a bug: a full disk, a store this user may only read, a name too long
            described = describe_os_error(e) if isinstance(e, OSError) else None
            if described is not None:
                click.echo(f"hdenv: error: {described[0]}", err=True)
                ctx.exit(described[1])
            click.echo(f"hdenv: error: internal error: {type(e).__name__}: {e}"
                       " (run with --debug for a traceback)", err=True)
            ctx.exit(1)


def _stand_in(name: str, entry: tuple[str | None, str | None, bool, bool | str]
              ) -> click.Command:
    """A command as far as the group's help needs it: its short help and visibility."""
    short_help, help_text, hidden, deprecated = entry
    return click.Command(name, short_help=short_help, help=help_text, hidden=hidden,
                         deprecated=deprecated)


def index_entries() -> dict[str, tuple[str | None, str | None, bool, bool | str]]:
    """What `commandindex.INDEX` must hold: each lazy command's help fields, from itself."""
    ctx = click.Context(cli)
    out = {}
    for name in sorted(LAZY_COMMANDS):
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        first = cmd.help.split("\n\n")[0] if cmd.help else cmd.help  # all a short help uses
        out[name] = (cmd.short_help, first, cmd.hidden, cmd.deprecated)
    return out


HELP_WIDTH = 78  # what click formats to on a terminal of 80 columns or more, or none


def help_texts() -> dict[str, str]:
    """What `hdenv [GROUP] [COMMAND] --help` prints at `HELP_WIDTH`, by command path."""
    def context(cmd: click.Command, name: str, parent: click.Context | None) -> click.Context:
        """As click makes it for parsing: the command's own settings (`-h`), the parent's."""
        return click.Context(cmd, info_name=name, parent=parent, **cmd.context_settings)

    root = context(cli, "hdenv", None)
    root.terminal_width = HELP_WIDTH
    out = {"": cli.get_help(root) + "\n"}
    for name, cmd in cli.all_commands(root).items():
        ctx = context(cmd, name, root)
        out[name] = cmd.get_help(ctx) + "\n"
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(ctx):
                subcmd = cmd.get_command(ctx, sub)
                assert subcmd is not None
                out[f"{name} {sub}"] = subcmd.get_help(context(subcmd, sub, ctx)) + "\n"
    return out


def visible_names() -> list[str]:
    """What `hdenv commands` prints (and `init` gives completion): every visible command."""
    ctx = click.Context(cli)
    return sorted(name for name, cmd in cli.all_commands(ctx).items() if not cmd.hidden)


def index_source() -> str:
    """commandindex.py's text; `python -m hdenv.cli.group` writes it."""
    lines = ["# ruff: noqa: E501",
             '"""Generated by `python -m hdenv.cli.group` from the commands themselves: each',
             "lazily imported command's short help, first help paragraph, hidden and",
             "deprecated flags, so `hdenv --help` lists them without importing their",
             'modules. Do not edit; tests/test_main.py checks that it is current."""', "",
             "INDEX: dict[str, tuple[str | None, str | None, bool, bool | str]] = {"]
    lines += [f"    {name!r}: {entry!r}," for name, entry in index_entries().items()]
    lines += ["}", "", f"# `hdenv [GROUP] [COMMAND] --help` at {HELP_WIDTH} columns"
              " (main.py prints these)", "HELP: dict[str, str] = {"]
    lines += [f"    {path!r}: {text!r}," for path, text in help_texts().items()]
    lines += ["}", "", "# `hdenv commands`: the visible commands (main.py prints them)",
              f"VISIBLE: list[str] = {visible_names()!r}"]
    return "\n".join([*lines, ""])


def settings_of(ctx: click.Context, jobs: int | None = None) -> Settings:
    obj = ctx.find_root().obj or {}
    return load_settings(store=obj.get("store"), jobs=jobs)


def store_of(ctx: click.Context) -> Store:
    from ..store.layout import Store

    settings = settings_of(ctx)
    return Store(settings.store, settings.upstreams)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(cls=HdenvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hdenv")
@click.option("--store", type=click.Path(file_okay=False), envvar=None,
              help="Store root (overrides HDENV_STORE and config.toml).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, store: str | None, debug: bool) -> None:
    """hdenv: a hash-addressed software store with shell integration."""
    ctx.obj = {"store": store, "debug": debug}


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects PARAM=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


@cli.command()
@click.argument("stack_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Packages built at once.")
@click.option("--keep-going", is_flag=True, help="Build what does not depend on a failure.")
@click.option("--dry-run", is_flag=True, help="Say what would be built, and why.")
@click.option("--set", "sets", multiple=True, metavar="PARAM=VALUE",
              help="Override a parameter (or pick one matrix value).")
@click.option("--executor", type=click.Choice(EXECUTORS),
              help="Build here (local) or as one Slurm job per package (slurm).")
@click.option("--skip-checks", is_flag=True,
              help="Do not run the packages' checks (the build log says so).")
@click.option("--keep-failed", is_flag=True,
              help="Keep a failed build's directory and print where it is.")
@click.option("-v", "--verbose", is_flag=True,
              help="Say what passed too: each build's link audit in one line.")
@click.pass_context
def build(ctx: click.Context, stack_file: Path, jobs: int | None, keep_going: bool,
          dry_run: bool, sets: tuple[str, ...], executor: str | None, skip_checks: bool,
          keep_failed: bool, verbose: bool) -> None:
    """Build every package and profile of STACK_FILE; print `NAME HASH` per profile."""
    from ..build.builder import RunFlags
    from ..build.stackbuild import BuildFailed, build_stack

    settings = settings_of(ctx, jobs)
    settings.check_executor()
    runner = None
    if (executor or settings.executor) == "slurm":
        from ..cluster.executor import SlurmExecutor

        runner = SlurmExecutor(settings.slurm_options, build_jobs=settings.build_jobs,
                               options_file=settings.sources.get("slurm-options"),
                               strict_links=settings.strict_links)
    try:
        outcome = build_stack(stack_file, settings, overrides=parse_sets(sets), jobs=jobs,
                              keep_going=keep_going, dry_run=dry_run, executor=runner,
                              flags=RunFlags(skip_checks, keep_failed, verbose))
    except BuildFailed as e:
        for p in e.outcome.profiles:
            click.echo(f"{p.name} {p.hash}")
        raise
    if dry_run:
        for line in outcome.dry_run_lines:
            click.echo(line)
        if not outcome.dry_run_lines:
            click.echo("nothing to build", err=True)
        return
    report = outcome.report
    captured = f", {len(report.captured)} host captured" if report.captured else ""
    fetched = f", {len(report.fetched)} fetched" if report.fetched else ""
    click.echo(f"{len(report.built)} built{fetched}{captured}, {len(report.present)} already"
               " present", err=True)
    for p in outcome.profiles:
        if p.new_generation:
            click.echo(f"profile {p.name}: generation {p.generation}", err=True)
        click.echo(f"{p.name} {p.hash}")


@cli.command("build-env", context_settings={"ignore_unknown_options": True})
@click.argument("stack_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("package")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--set", "sets", multiple=True, metavar="PARAM=VALUE",
              help="Override a parameter (or pick one matrix value).")
@click.pass_context
def build_env_cmd(ctx: click.Context, stack_file: Path, package: str,
                  command: tuple[str, ...], sets: tuple[str, ...]) -> None:
    """A shell (or `-- COMMAND`) with exactly the environment, sandbox and unpacked
    sources that PACKAGE's build gets; its dependencies must be built."""
    from ..build.buildenv import build_env

    sys.exit(build_env(stack_file, settings_of(ctx), package, command,
                       overrides=parse_sets(sets)))


@cli.command()
@click.argument("url")
@click.option("--sha256", help="Expected sha256 (hex); a mismatch stores nothing.")
@click.pass_context
def fetch(ctx: click.Context, url: str, sha256: str | None) -> None:
    """Store a source archive and print its key."""
    from ..store.layout import Store
    from ..store.sources import SourceStore

    settings = settings_of(ctx)
    store = Store(settings.store).ensure()
    click.echo(SourceStore(store, settings.mirrors).fetch(url, sha256))


@cli.group("host")
def host_group() -> None:
    """Capture host software as artifacts."""


@host_group.command("capture")
@click.argument("name")
@click.argument("programs", nargs=-1)
@click.option("--family", help="e.g. compiler")
@click.option("--library", "libraries", multiple=True, metavar="LIB",
              help="A shared library (soname or path) to capture too.")
@click.option("--version", "version", help="The artifact's version (default: reported).")
@click.option("--version-from", help="The program whose --version output gives the version.")
@click.pass_context
def host_capture(ctx: click.Context, name: str, programs: tuple[str, ...], family: str | None,
                 libraries: tuple[str, ...], version: str | None,
                 version_from: str | None) -> None:
    """Capture PROGRAMS (names on PATH or absolute paths; shared libraries such as
    libmpi.so.40 count as --library) as host artifact NAME."""
    from ..build import host

    progs = [p for p in programs if not host.looks_like_library(p)]
    libs = [*libraries, *(p for p in programs if host.looks_like_library(p))]
    store = store_of(ctx).ensure()
    identity = settings_of(ctx).host_identity
    click.echo(host.capture(store, name, progs, family=family, libraries=tuple(libs),
                            version=version, version_from=version_from, identity=identity))


@cli.command("list")
@click.argument("what", type=click.Choice(["artifacts", "profiles", "names"]), required=False)
@click.option("--json", "as_json", is_flag=True)
@output_options
@click.pass_context
def list_cmd(ctx: click.Context, what: str | None, as_json: bool, terse: bool, color: str,
             redirect: bool) -> None:
    """What is loaded (as `module list`); or the store's artifacts (id first), named
    profiles (`NAME HASH GEN PATH`) or names."""
    if what is None:
        from .shell import loaded_cmd

        loaded_cmd.callback(as_json=as_json, as_hash=False,  # type: ignore[misc]
                            terse=terse, color=color, redirect=redirect)
        return

    click.echo(list_text(store_of(ctx), what, as_json), nl=False)


@cli.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Description, what loading changes, spec, dependencies, path, size, generations of REF."""
    click.echo(show_text(store_of(ctx), ref, as_json), nl=False)


@cli.command()
@click.argument("ref")
@click.pass_context
def path(ctx: click.Context, ref: str) -> None:
    """Print the prefix of REF (for scripts)."""
    click.echo(str(store_of(ctx).resolve(ref).path))


@cli.command()
@click.argument("ref", required=False)
@click.option("--sources", is_flag=True, help="Also re-hash every stored source archive.")
@click.pass_context
def verify(ctx: click.Context, ref: str | None, sources: bool) -> None:
    """Check artifacts, profiles and names for damage, host software for drift (all, or REF's)."""
    from ..provenance.drift import artifact_drift
    from ..store.verify import run_checks

    problems, checked = run_checks(store_of(ctx), ref, sources=sources,
                                   host_check=artifact_drift)
    for p in problems:
        click.echo(p)
    click.echo(f"verified {checked} artifact(s): {len(problems)} problem(s)", err=True)
    if problems:
        sys.exit(1)


def run() -> None:
    """The whole click program (main.py's way in when the lean path does not answer)."""
    try:
        cli(prog_name="hdenv")
    finally:  # the last buffered lines: a reader gone by now is no error either
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            from ..shell.fastload import quiet_broken_pipe

            quiet_broken_pipe()


if __name__ == "__main__":
    Path(__file__).with_name("commandindex.py").write_text(index_source(), encoding="utf-8")
