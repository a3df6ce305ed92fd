"""The `hdenv` program's entry point: the read-only commands answered without click.

Scripts, cron jobs, completion and batch jobs without `hdenv init` run the
bare program, and `import click` alone costs more than Lmod needs for a whole
`module -t avail`. So these take the lean path:

- `--version`, `loaded`, `list` (what is loaded), `avail`, `spider`: the same
  `shell.catalog` functions the click commands and the shell function call,
  reached through the shell function's own parser (`fastload.parse_call`);
- `list WORD [--json]`, `show REF [--json]`, `config [--json]`: the texts of
  `plain.py`, which the click commands print too;
- `[GROUP] [COMMAND] --help` (or `-h`) on 80 columns or more (or none): the
  text click prints then, generated into `commandindex.HELP`; `commands` (the
  completion scripts' word list): `commandindex.VISIBLE`.

Anything the lean path is not sure of (another option, a usage error, a
narrower terminal, any other command) goes to the click group in `group.py`,
unchanged; tests/test_main.py runs both ways and compares what they print.
"""

from __future__ import annotations

import atexit
import gc
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..shell.fastload import Call

LEAN_COMMANDS = ("avail", "loaded", "spider", "list", "show", "config")
LIST_WORDS = ("artifacts", "profiles", "names")


def lean(args: list[str]) -> bool:
    """Answer `args` without click if it is one of the lean forms; False: click must."""
    if args == ["--version"]:  # click's version_option prints exactly this
        from .. import __version__

        print(f"hdenv, version {__version__}")
        return True
    if args == ["commands"]:  # what completion scripts sourced without `init` ask for
        from .commandindex import VISIBLE

        print("\n".join(VISIBLE))
        return True
    if args and args[-1] in ("--help", "-h") and len(args) <= 3:
        return _help(args[:-1])
    first = args[0] if args else ""
    if first not in (*LEAN_COMMANDS, "--store", "--debug") and not first.startswith("--store="):
        return False  # `--help`, `build`, ...: decided before importing anything else
    from ..shell import fastload

    call = fastload.parse_call(args)
    if call is None or call.cmd not in LEAN_COMMANDS:
        return False
    if call.store is not None and _exists_not_dir(call.store):
        return False  # click's --store check says what is wrong with it
    if call.cmd in ("show", "config") or (
            call.cmd == "list" and any(not a.startswith("-") for a in call.args)):
        return _store_command(call)
    try:
        return _catalog(call)
    except BrokenPipeError:
        fastload.quiet_broken_pipe()
    except Exception as e:
        sys.exit(_error(e, call.debug))
    return True  # not reached: both handlers exit


def _help(path: list[str]) -> bool:
    """`hdenv [GROUP] [COMMAND] --help` from commandindex.HELP (click's own text, generated
    and tested), when click would format it to the same width: 80 columns or more."""
    if _columns() < 80 or any(w.startswith("-") for w in path):
        return False
    from .commandindex import HELP

    text = HELP.get(" ".join(path))
    if text is None:
        return False
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `hdenv --help | head -1`
        from ..shell.fastload import quiet_broken_pipe

        quiet_broken_pipe()
    return True


def _columns() -> int:
    """The terminal's width as click finds it (shutil.get_terminal_size, without shutil)."""
    import posix

    try:
        columns = int(posix.environ.get(b"COLUMNS", b"0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return (posix.get_terminal_size(stdout.fileno()).columns or 80) if stdout else 80
    except (ValueError, OSError):  # closed, detached, not a terminal
        return 80


def _exists_not_dir(path: str) -> bool:
    import posix
    import stat

    try:
        return not stat.S_ISDIR(posix.stat(path).st_mode)
    except OSError:
        return False


def _store_command(call: Call) -> bool:
    """`list WORD [--json]`, `show REF [--json]`, `config [--json]` (plain.py's texts);
    any other form (another option, a word too many or too few) is click's."""
    words = [a for a in call.args if a != "--json"]
    expected = {"list": 1, "show": 1, "config": 0}[call.cmd]
    if (len(words) != expected or any(w.startswith("-") for w in words)
            or call.args.count("--json") > 1
            or call.cmd == "list" and words[0] not in LIST_WORDS):
        return False
    from ..config import load_settings
    from . import plain

    try:
        settings = load_settings(store=call.store)
        as_json = "--json" in call.args
        if call.cmd == "config":
            text = plain.config_text(settings, as_json)
        else:
            from ..store.layout import Store

            store = Store(settings.store, settings.upstreams)
            text = (plain.list_text(store, words[0], as_json) if call.cmd == "list"
                    else plain.show_text(store, words[0], as_json))
    except Exception as e:
        if call.debug:  # click's group: a traceback
            raise
        sys.exit(_error(e, call.debug))
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `hdenv list artifacts | head -1`
        from ..shell.fastload import quiet_broken_pipe

        quiet_broken_pipe()
    return True


def _catalog(call: Call) -> bool:
    """avail, loaded, list, spider as the click commands print them (catalog.run)."""
    from ..errors import UserError
    from ..shell import catalog, fastload, lightos, terminal

    environ = lightos.environ()
    if call.store is not None:  # --store: that store, then the configured upstreams
        environ = {**environ, "HDENV_STORE": call.store}
    config = fastload.Config(environ, fastload.PER_USER, fastload.PER_USER)
    try:
        rest, opts = terminal.take_options(call.args)
        width = terminal.width(environ) if call.cmd == "avail" else terminal.DEFAULT_WIDTH
        roots = config.roots() if call.cmd in ("avail", "spider") else []
        text = catalog.run(call.cmd, rest, environ, roots, width)
    except catalog.Delegate:  # --help, an unknown option: click's usage and errors
        return False
    except UserError as e:
        if str(e).startswith("usage: "):  # a missing or extra word: click's own message
            return False
        raise
    terminal.write(text, environ, opts)
    sys.stdout.flush()
    return True


def _error(e: Exception, debug: bool) -> int:
    """One line and the exit code, as `group.HdenvGroup.invoke` says it (an HdenvError
    even with --debug, as the catalog commands' `_errors` say it)."""
    from ..errors import HdenvError

    if isinstance(e, HdenvError):
        print(f"hdenv: error: {e.render()}", file=sys.stderr)
        return e.exit_code
    if debug:
        raise e
    if isinstance(e, OSError):
        from ..oserrors import describe

        described = describe(e)
        if described is not None:
            print(f"hdenv: error: {described[0]}", file=sys.stderr)
            return described[1]
    print(f"hdenv: error: internal error: {type(e).__name__}: {e}"
          " (run with --debug for a traceback)", file=sys.stderr)
    return 1


def main() -> None:
    """`hdenv ARGS`: the lean path when it can answer, else the click program."""
    # The interpreter's last collection walks every object the run made, to find cycles
    # nobody will use again: 25-30 ms after a 200-artifact reproduce (its descriptions,
    # tar headers, click's objects), 3-7 ms of a bare command. Frozen objects are skipped.
    # Nothing here leaves work to a cycle's finalizer: files are closed by `with`,
    # temporary paths by their own cleanup, and the standard streams are flushed at exit
    # whatever is frozen. At exit only: a program that calls `main` and goes on keeps
    # collecting as usual.
    atexit.register(gc.freeze)
    if not lean(sys.argv[1:]):
        from .group import run

        run()

