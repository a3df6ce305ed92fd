"""Core of the shell commands that are not on the fast path: init, loaded,
avail, env and the completion helper. No click here (cli_shell.py is the thin
click layer), so these are plain functions returning text or data.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..resources import data_dir
from ..store.layout import Store
from . import envdiff, fastload
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


def init_code(shell_name: str | None = None, *, completion: bool = True) -> str:
    """The code `eval "$(hdenv init SHELL)"` runs to define the function."""
    from ..config import default_config_file, default_store

    name = shell_name or detect_shell()
    shell = get_shell(name)
    completion_file = None
    if shell.name in COMPLETIONS:
        completion_file = data_dir("completions") / COMPLETIONS[shell.name]
    return render(shell, TEMPLATES[shell.name], {
        "python": sys.executable,
        "libdir": libdir(),
        "default_config": str(default_config_file()),
        "default_store": str(default_store()),
        "fast_code": FAST_CODE,
        "helper": str(data_dir("shell") / "hdenv.csh"),
        "completion": str(completion_file) if completion and completion_file else "",
    })


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


def loaded_records(environ: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """What is loaded, from the environment (the only place it is kept)."""
    environ = dict(os.environ) if environ is None else environ
    try:
        records = envdiff.decode(environ.get(envdiff.RECORD_VAR))
    except envdiff.RecordError as e:
        raise UserError(str(e)) from None
    return [{"name": r.name, "hash": r.hash, "prefix": r.prefix, "family": r.family}
            for r in records]


def loaded_text(records: list[dict[str, Any]], as_json: bool) -> str:
    if as_json:
        return json.dumps(records, indent=2) + "\n"
    return "".join(f"{r['name'] or '-'} {r['hash']}\n" for r in records)


def _generations(store: Store, name: str) -> list[tuple[int, str]]:
    """(number, profile hash) of each generation of `name`, oldest first."""
    from ..profile.profiles import list_generations

    return [(g.number, g.hash) for g in list_generations(store, name)]


def avail(store: Store) -> list[dict[str, Any]]:
    """Named profiles with their generations; `current` marks the default."""
    loaded = {r["hash"] for r in loaded_records()}
    out = []
    for name in store.list_names(upstreams=True):
        current = store.name_current(name)
        current_hash = current.name if current is not None else None
        home = store.name_store(name)
        out.append({
            "name": name,
            "upstream": str(home.root) if home is not None and home is not store else None,
            "current": current_hash,
            "generations": [{"generation": g, "hash": h, "current": h == current_hash,
                             "loaded": h in loaded} for g, h in _generations(store, name)],
        })
    return out


def avail_text(entries: list[dict[str, Any]]) -> str:
    lines = []
    for entry in entries:
        upstream = f"  (upstream: {entry['upstream']})" if entry.get("upstream") else ""
        lines.append(f"{entry['name']}:{upstream}")
        for g in entry["generations"]:
            marks = [m for m in ("current", "loaded") if g[m]]
            suffix = f"  ({', '.join(marks)})" if marks else ""
            lines.append(f"  {g['generation']:>7}  {g['hash']}{suffix}")
    return "".join(line + "\n" for line in lines)


def env_code(ref: str, shell_name: str, store: Store | Path) -> str:
    """The code `hdenv load REF` would evaluate in the current environment."""
    shell = get_shell(shell_name)
    roots = ([str(s.root) for s in store.chain()] if isinstance(store, Store)
             else [str(store)])
    return fastload.run("load", [ref], shell, os.environ, lambda: roots)


def complete_refs(store: Store) -> list[str]:
    """Profile names, NAME/N generations and hashes, for the completion scripts."""
    names = store.list_names(upstreams=True)
    generations = [f"{name}/{number}" for name in names for number, _ in _generations(store, name)]
    return [*names, *generations, *store.list_profile_hashes(upstreams=True)]
