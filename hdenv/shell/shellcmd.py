"""Core of the shell commands that are not on the fast path: init (printed or
written to a file), env, and the head of `show`. No click here (cli/shell.py is
the thin click layer), so these are plain functions returning text or data.
avail, loaded and spider live in catalog.py (they run on the fast path too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..resources import data_dir
from ..store.layout import Store
from ..xdg import user_dir
from . import fastload
from .quoting import Shell, get_shell, supported

# What the shell function runs; the library directory comes in as argv[1] so the
# code itself is a constant that needs no quoting beyond the shell's own.
FAST_CODE = ("import sys;sys.path.insert(0,sys.argv[1]);"
             "from hdenv.shell.fastload import main;main(sys.argv[2:])")
TEMPLATES = {"bash": "bash.sh.j2", "zsh": "zsh.zsh.j2", "fish": "fish.fish.j2",
             "tcsh": "tcsh.csh.j2"}
COMPLETIONS = {"bash": "hdenv.bash", "zsh": "_hdenv", "fish": "hdenv.fish"}


def detect_shell() -> str:
    """The parent shell's name, via shellingham; a clear error when unsure."""
    import shellingham

    try:
        name, _path = shellingham.detect_shell()
    except shellingham.ShellDetectionFailure:
        choices = "|".join(supported())
        raise UserError(f"could not detect your shell; name it: hdenv init {{{choices}}}") from None
    return str(name).lower()


def libdir() -> str:
    """The directory holding the `hdenv` package, for `python -S` to import it."""
    return str(Path(fastload.__file__).resolve().parents[2])


def init_code(shell_name: str | None = None, *, completion: bool = True,
              commands: list[str] | tuple[str, ...] = (), written: Path | None = None,
              system: bool = False) -> str:
    """The code `eval "$(hdenv init SHELL)"` runs (or the file `--write` writes).

    `commands` are the subcommands completion offers (the click group knows
    them; this layer does not import click). `written` is where the code will
    live: it then checks at each shell start, with the shell's own file tests,
    whether hdenv was installed anew since, and writes itself again if so.
    `system` code is for every user: it bakes in no one's config file or
    store, so the fast path finds each user's from their environment.
    """
    from ..config import default_config_file, default_store

    name = shell_name or detect_shell()
    shell = get_shell(name)
    completion_file = None
    if shell.name in COMPLETIONS:
        completion_file = data_dir("completions") / COMPLETIONS[shell.name]
    helper = data_dir("shell") / "hdenv.csh"
    stamps = [Path(__file__).resolve().parents[1] / "__init__.py",
              data_dir("templates") / TEMPLATES[shell.name]]
    if completion and completion_file is not None:
        stamps.append(completion_file)
    if shell.name == "tcsh":
        stamps.append(helper)
    regenerate = ["init", shell.name, "--write"] + ([] if completion else ["--no-completion"])
    return render(shell, TEMPLATES[shell.name], {
        "python": sys.executable,
        "libdir": libdir(),
        "default_config": PER_USER if system else str(default_config_file()),
        "default_store": PER_USER if system else str(default_store()),
        "fast_code": FAST_CODE,
        "helper": str(helper),
        "completion": str(completion_file) if completion and completion_file else "",
        "commands": " ".join(commands),
        "written": str(written) if written else "",
        "stamps": [str(p) for p in stamps],
        "regenerate": regenerate,
    })


def init_file(shell_name: str) -> Path:
    """Where `hdenv init SHELL --write` puts the code: the user's data dir, per shell."""
    return Path(user_dir("data")) / "init" / f"hdenv.{shell_name}"


def write_init(shell_name: str | None = None, *, completion: bool = True,
               commands: list[str] | tuple[str, ...] = ()) -> Path:
    """Write the init code to `init_file(SHELL)` atomically and return the path.

    A shell starting while the file is rewritten reads the old or the new
    file, never half of one.
    """
    from ..store.fsutil import atomic_write

    name = shell_name or detect_shell()
    get_shell(name)  # an unknown shell is an error before anything is written
    path = init_file(name)
    code = init_code(name, completion=completion, commands=commands, written=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, code.encode("utf-8"))
    return path


# what `init --system` code passes for the config file and store: the fast path finds
# each user's (an empty word would vanish in tcsh)
PER_USER = "@user"
# `init --system`: where login shells of each kind look, under a prefix (default /)
SYSTEM_FILES = (("etc/profile.d/hdenv.sh", ("bash", "zsh")), ("etc/profile.d/hdenv.csh", ("tcsh",)),
                ("etc/fish/conf.d/hdenv.fish", ("fish",)))


def system_code(shells: tuple[str, ...], commands: list[str] | tuple[str, ...]) -> str:
    """One file for login shells: sh-family files pick bash's or zsh's code at run time.

    Each shell's code is kept in a quoted string and evaluated only by its own
    shell, since bash would otherwise parse zsh's syntax (and the reverse).
    """
    if len(shells) == 1:
        return ("# hdenv shell integration, written by `hdenv init --system`.\n"
                if shells[0] == "fish" else "") + init_code(shells[0], commands=commands,
                                                            system=True)
    head = ("# hdenv shell integration for login shells (bash, zsh), written by"
            " `hdenv init --system`;\n# other sh-family shells are left alone.\n")
    parts = []
    for i, name in enumerate(shells):
        code = init_code(name, commands=commands, system=True).replace("'", "'\\''")
        test = "BASH_VERSION" if name == "bash" else "ZSH_VERSION"
        parts.append(f'{"if" if i == 0 else "elif"} [ -n "${{{test}-}}" ]; then\n'
                     f"    eval '{code}'\n")
    return head + "".join(parts) + "fi\n"


def write_system(prefix: Path, commands: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Write the login-shell files under `prefix`; their paths."""
    from ..errors import HdenvError
    from ..store.fsutil import atomic_write

    written = []
    for rel, shells in SYSTEM_FILES:
        path = prefix / rel
        code = system_code(shells, commands).encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, code)
            path.chmod(0o644)
        except OSError as e:  # not root, a read-only /etc: one line, as a store problem
            raise HdenvError(f"cannot write {path}: {e.strerror or e}"
                             " (--system needs root; --prefix DIR writes elsewhere)") from None
        written.append(path)
    return written


def render(shell: Shell, template: str, context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = shell.quote
    return env.get_template(template).render(**context)


def env_code(ref: str, shell_name: str, store: Store | Path) -> str:
    """The code `hdenv load REF` would evaluate in the current environment."""
    shell = get_shell(shell_name)
    roots = ([str(s.root) for s in store.chain()] if isinstance(store, Store)
             else [str(store)])
    return fastload.run("load", [ref], shell, os.environ, lambda: roots)
