"""The load / unload / swap / purge path, run by the shell function.

Users run `hdenv load` all day, so this module is what the function executes
with `python -I -S` (no site-packages, no click, no jinja2, not even `os`): it
imports only `binascii`, `_json`, `errors`, `lightos`, `envdiff` and the one
shell module it needs. A profile is found by following one link (names) or
one `stat` (full hashes); a hash prefix lists
`profiles/` only, never `artifacts/`, so the cost does not grow with the
number of artifacts in the store.

The program prints shell code on stdout and exits 0, or prints one error line
on stderr and exits 2; the function evaluates the code only on success.
"""

from __future__ import annotations

import sys

from ..errors import UserError
from . import envdiff, lightos
from .envdiff import LoadRecord
from .quoting import Shell, get_shell
from .quoting.base import check_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc costs ms on every load
    from collections.abc import Callable, Mapping

# (variable, sub-directory, keep man's default path when the variable was unset)
PATH_DIRS = (("PATH", "bin", False), ("MANPATH", "share/man", True),
             ("PKG_CONFIG_PATH", "lib/pkgconfig", False))
PREFIX_VAR = "CMAKE_PREFIX_PATH"
B32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")
HASH_CHARS = 32
MIN_PREFIX = 6
COMMANDS = ("load", "unload", "swap", "purge")


class Profile:
    """What a load needs to know about one profile."""

    def __init__(self, hash_: str, name: str | None, prefix: str,
                 env: dict[str, str], family: str | None, generation: int | None = None):
        self.hash = hash_
        self.name = name
        self.prefix = prefix
        self.env = env
        self.family = family
        self.generation = generation

    @property
    def ref(self) -> str:
        """`demo/2` as the user sees it (the hash when loaded by hash)."""
        if self.name and self.generation is not None:
            return f"{self.name}/{self.generation}"
        return self.name or self.hash


def note(message: str) -> None:
    print(f"hdenv: {message}", file=sys.stderr)


# -- where the store is -------------------------------------------------------

def store_root(env: Mapping[str, str], default_config: str, default_store: str) -> str:
    """Same precedence as config.load_settings, without platformdirs.

    `hdenv init` bakes the platformdirs defaults into the function, so this
    only reads config.toml when such a file exists, and imports tomllib only
    when that file is more than configscan.py can be sure of.
    """
    if env.get("HDENV_STORE"):
        return lightos.absolute(env["HDENV_STORE"])
    explicit = "HDENV_CONFIG" in env
    cfg = env["HDENV_CONFIG"] if explicit else default_config
    if cfg and (explicit or lightos.exists(cfg)):
        from ..configscan import read_config

        value = read_config(cfg, explicit).get("store")
        if value:
            return lightos.absolute(str(value))
    return default_store


# -- finding a profile --------------------------------------------------------

def is_hash_like(ref: str) -> bool:
    return bool(ref) and all(c in B32 for c in ref)


def _meta(root: str, hash_: str) -> str:
    return lightos.join(root, "profiles", hash_, ".hdenv", "profile.json")


def read_profile(root: str, hash_: str, name: str | None,
                 generation: int | None = None) -> Profile:
    prefix = lightos.join(root, "profiles", hash_)
    meta_path = _meta(root, hash_)
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = envdiff.json_loads(f.read())
    except FileNotFoundError:
        raise UserError(f"profile {hash_} is not in the store {root}") from None
    except ValueError as e:
        raise UserError(f"damaged profile metadata: {e}", file=meta_path) from None
    env = meta.get("env") or {}
    if not isinstance(env, dict):
        raise UserError("'env' must be a table", file=meta_path)
    return Profile(hash_, name, prefix, {str(k): str(v) for k, v in env.items()},
                   meta.get("family"), generation)


def _profile_by_prefix(root: str, ref: str) -> Profile | None:
    if len(ref) == HASH_CHARS:
        if lightos.is_file(_meta(root, ref)):
            return read_profile(root, ref, None)
        return None
    try:
        entries = lightos.listdir(lightos.join(root, "profiles"))
    except FileNotFoundError:
        return None
    matches = sorted(h for h in entries if h.startswith(ref) and lightos.is_file(_meta(root, h)))
    if len(matches) > 1:
        raise UserError(f"hash prefix {ref!r} is ambiguous: {', '.join(matches[:5])}")
    return read_profile(root, matches[0], None) if matches else None


def _artifact(root: str, ref: str) -> Profile:
    """Loading a bare artifact is rare: take the full store module for it."""
    from pathlib import Path

    from ..store.layout import Store

    found = Store(Path(root)).resolve(ref)
    return Profile(found.ident, None, str(found.path), {}, None)


def _named_profile(root: str, name: str, entry: str) -> Profile | None:
    """The profile `names/NAME/ENTRY` (`current` or a generation number) points at.

    `current` links to the generation's number, so its first hop names the
    generation the load is recorded (and shown) as.
    """
    link = lightos.join(root, "names", name, entry)
    if entry.isdigit():
        generation: int | None = int(entry)
    else:
        first = lightos.readlink(link)
        if first is None:
            return None
        generation = int(first) if first.isdigit() else None
    hash_ = lightos.basename(lightos.final_target(link))
    if not lightos.is_file(_meta(root, hash_)):
        return None
    return read_profile(root, hash_, name, generation)


def _unknown(root: str, ref: str) -> UserError:
    """The error with suggestions; only on the error path, so the store modules are fine."""
    from ..store.layout import short_prefix_detail
    from ..store.suggest import GENERIC, unknown_ref

    return unknown_ref([root], ref, short_prefix_detail(ref) or GENERIC)


def resolve(root: str, ref: str) -> Profile:
    """A profile name, NAME/N, a profile hash or unique prefix, or an artifact id."""
    if not ref:
        raise UserError("empty REF")
    name, _, generation = ref.partition("/")
    if generation.isdigit() or "/" not in ref:  # NAME/N or NAME
        named = _named_profile(root, name, str(int(generation)) if generation else "current")
        if named is not None:
            return named
    if "/" in ref:
        return _artifact(root, ref)  # also words a missing NAME/N
    if is_hash_like(ref) and len(ref) >= MIN_PREFIX:
        found = _profile_by_prefix(root, ref)
        if found is not None:
            return found
    raise _unknown(root, ref)


# -- the session: one command's changes to a copy of the environment ---------

def apply(env: dict[str, str], prof: Profile) -> LoadRecord:
    """Load `prof` into `env` and return the record of exactly what changed."""
    rec = LoadRecord(hash=prof.hash, name=prof.name, family=prof.family, prefix=prof.prefix,
                     generation=prof.generation)
    for var, sub, keep_default in PATH_DIRS:
        path = lightos.join(prof.prefix, sub)
        if lightos.is_dir(path):
            envdiff.prepend(env, rec, var, [path], keep_default)
    envdiff.prepend(env, rec, PREFIX_VAR, [prof.prefix])
    for var in sorted(prof.env):
        envdiff.set_var(env, rec, check_name(var), prof.env[var])
    return rec


class Session:
    """Applies loads and unloads to a copy of the environment and its record."""

    def __init__(self, environ: Mapping[str, str], root: Callable[[], str]):
        self.env: dict[str, str] = dict(environ)
        self._root = root
        try:
            self.records = envdiff.decode(self.env.get(envdiff.RECORD_VAR))
        except envdiff.RecordError as e:
            raise UserError(f"{e}; run `unset {envdiff.RECORD_VAR} {envdiff.LOADED_VAR}` "
                            "(tcsh: unsetenv) to start afresh") from None

    def find_loaded(self, ref: str) -> int:
        """Index of the loaded profile `ref` names: NAME/N, NAME, a hash or hash prefix."""
        name, _, generation = ref.partition("/")
        for i, rec in enumerate(self.records):
            if ref in (rec.name, rec.hash, rec.ref):
                return i
            if generation.isdigit() and rec.name == name and rec.generation == int(generation):
                return i  # demo/01
        if len(ref) >= MIN_PREFIX:
            hits = [i for i, r in enumerate(self.records) if r.hash.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise UserError(f"hash prefix {ref!r} matches several loaded profiles")
        what = " ".join(r.ref for r in self.records)
        detail = f"loaded: {what}" if what else "nothing is loaded"
        raise UserError(f"{ref!r} is not loaded ({detail})")

    def unload(self, ref: str) -> LoadRecord:
        return envdiff.unload(self.env, self.records, self.find_loaded(ref))

    def load(self, ref: str) -> None:
        prof = resolve(self._root(), ref)
        for rec in list(self.records):
            if rec.hash == prof.hash:
                note(f"{prof.ref} is already loaded; nothing to do")
                return
        for rec in list(self.records):
            if prof.name is not None and rec.name == prof.name:
                note(f"replacing {rec.ref} with {prof.ref}")
                envdiff.unload(self.env, self.records, self.records.index(rec))
            elif prof.family is not None and rec.family == prof.family:
                note(f"family {prof.family!r}: unloading {rec.ref} to load {prof.ref}")
                envdiff.unload(self.env, self.records, self.records.index(rec))
        self.records.append(apply(self.env, prof))

    def purge(self) -> None:
        while self.records:
            envdiff.unload(self.env, self.records, len(self.records) - 1)

    def finish(self) -> dict[str, str]:
        envdiff.store_records(self.env, self.records)
        return self.env


def _arity(cmd: str, args: list[str], low: int, high: int | None) -> None:
    for a in args:
        if a.startswith("-"):
            raise UserError(f"hdenv {cmd}: unknown option {a!r}")
    if len(args) < low or (high is not None and len(args) > high):
        usage = {"load": "REF...", "unload": "REF...", "swap": "OLD NEW", "purge": ""}[cmd]
        raise UserError(f"usage: hdenv {cmd} {usage}".rstrip())


def run(cmd: str, args: list[str], shell: Shell, environ: Mapping[str, str],
        root: Callable[[], str]) -> str:
    """The shell code for one command; raises UserError before printing anything."""
    session = Session(environ, root)
    if cmd in ("load", "unload"):
        _arity(cmd, args, 1, None)
        for ref in args:
            session.load(ref) if cmd == "load" else session.unload(ref)
    elif cmd == "swap":
        _arity(cmd, args, 2, 2)
        session.unload(args[0])
        session.load(args[1])
    elif cmd == "purge":
        _arity(cmd, args, 0, 0)
        session.purge()
    else:
        raise UserError(f"not a load command: {cmd!r}")
    return shell.script(envdiff.changes(dict(environ), session.finish()))


# -- the function's entry: global options, help, and what the full program answers --

PRINT_COMMANDS = ("avail", "loaded", "spider")


class Call:
    """One invocation of the shell function, global options taken off."""

    def __init__(self, store: str | None, debug: bool, cmd: str, args: list[str]):
        self.store = store
        self.debug = debug
        self.cmd = cmd
        self.args = args


def parse_call(args: list[str]) -> Call | None:
    """`[--store S] [--debug] CMD ARGS...`; None when the full program must answer.

    That is anything else before the command (`--help`, `--version`, a typo),
    and a `-h`/`--help` after it: click prints the real usage of every command.
    """
    store, debug, i = None, False, 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "--store" and i + 1 < len(args):
            store, i = args[i + 1], i + 2
        elif args[i].startswith("--store="):
            store, i = args[i][len("--store="):], i + 1
        elif args[i] == "--debug":
            debug, i = True, i + 1
        else:
            return None
    if i >= len(args):
        return None
    rest = args[i + 1:]
    for a in rest:
        if a == "--":
            break
        if a in ("-h", "--help"):
            return None
    return Call(store, debug, args[i], rest)


def full_program(shell_name: str, args: list[str]) -> list[str]:
    """The command line of the full program for `args`, as the function's `*)` branch runs it."""
    return ["env", f"HDENV_SHELL_FUNCTION={shell_name}", sys.executable, "-m", "hdenv", *args]


def _exec_full(shell_name: str, args: list[str]) -> None:
    import posix

    argv = full_program(shell_name, args)
    sys.stdout.flush()
    env = {**posix.environ, b"HDENV_SHELL_FUNCTION": shell_name.encode()}
    posix.execve(sys.executable, argv[2:], env)


def _print_command(shell_name: str, call: Call | None, args: list[str],
                   environ: Mapping[str, str], root: Callable[[], str]) -> None:
    """avail, loaded, spider: printed straight to the terminal, never evaluated."""
    if call is None:
        _exec_full(shell_name, args)
        return
    from . import catalog

    try:
        text = catalog.run(call.cmd, call.args, environ, [root()])
    except catalog.Delegate:
        _exec_full(shell_name, args)
        return
    sys.stdout.write(text)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the shell function: SHELL CONFIG STORE ARGS...

    The function sends `load`, `unload`, `swap`, `purge` and anything starting
    with an option here and evaluates what it prints; `avail`, `loaded` and
    `spider` it runs without evaluating (the first word tells which). What the
    fast path does not do becomes code that runs the full program.
    """
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        if len(argv) < 4:
            raise UserError("the hdenv shell function is out of date; run `hdenv init` again")
        shell_name, default_config, default_store, *args = argv
        environ = lightos.environ()
        call = parse_call(args)
        if call is not None and call.store:
            store = lightos.absolute(call.store)
            root: Callable[[], str] = lambda: store  # noqa: E731
        else:
            root = lambda: store_root(environ, default_config, default_store)  # noqa: E731
        if args[0] in PRINT_COMMANDS:
            _print_command(shell_name, call, args, environ, root)
            return
        shell = get_shell(shell_name)
        if call is None or call.cmd not in COMMANDS:
            code = " ".join(shell.quote(a) for a in full_program(shell_name, args)) + "\n"
        else:
            code = run(call.cmd, call.args, shell, environ, root)
    except UserError as e:
        print(f"hdenv: error: {e.render()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:  # a bug: one line, as the full program says it
        if debug:
            raise
        print(f"hdenv: error: internal error: {type(e).__name__}: {e}"
              " (run with --debug for a traceback)", file=sys.stderr)
        sys.exit(1)
    sys.stdout.write(code)


if __name__ == "__main__":  # pragma: no cover
    main()
