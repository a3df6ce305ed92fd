"""Names that end up in file names and in shells: one rule each, for every layer.

A profile name becomes a directory under `names/`; an environment variable a
profile sets is spoken in bash, zsh, fish and tcsh. Both are checked when the
stack file is read (with FILE:LINE), so nothing invalid reaches the store or,
later, a user's shell. Kept to the stdlib: the fast load path may import it.
"""

from __future__ import annotations

PROFILE_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+")
PROFILE_NAME_REST = PROFILE_NAME_FIRST | frozenset(".-")
PROFILE_NAME_MAX = 200  # a directory name: leave room under NAME_MAX (255)

# Variables a profile must not set, with why. Read-only or special in at least
# one of the four shells (setting them fails, or changes the shell itself),
# managed by `load` itself, or hdenv's own bookkeeping.
RESERVED_VARS: dict[str, str] = {
    **{v: "read-only in bash/zsh" for v in ("UID", "EUID", "PPID", "SHELLOPTS", "BASHOPTS")},
    **{v: "special in fish" for v in ("status", "pipestatus", "history", "version", "fish_pid",
                                       "hostname", "argv", "PWD", "SHLVL", "_", "umask",
                                       "CMD_DURATION", "last_pid")},
    **{v: "tied to a shell variable in zsh/tcsh" for v in ("path", "manpath", "fpath", "cdpath",
                                                           "home", "term", "user", "shell",
                                                           "prompt", "cwd", "options")},
    **{v: "set by `hdenv load` from the profile's directories"
       for v in ("PATH", "MANPATH", "PKG_CONFIG_PATH", "CMAKE_PREFIX_PATH")},
    **{v: "hdenv's own record of what is loaded" for v in ("HDENV_RECORD", "HDENV_LOADED")},
}
RESERVED_PREFIXES = ("HDENV_SAVED_", "BASH_", "ZSH_", "__hdenv")


def profile_name_problem(name: str) -> str | None:
    """Why `name` cannot be a profile name, or None."""
    if not name:
        return "it is empty"
    if name == "current":
        return "'current' is reserved (names/NAME/current)"
    if len(name) > PROFILE_NAME_MAX:
        return f"it is longer than {PROFILE_NAME_MAX} characters"
    if name[0] not in PROFILE_NAME_FIRST or not set(name) <= PROFILE_NAME_REST:
        return "use letters, digits, '.', '_', '+', '-', not starting with '.' or '-'"
    return None


HASH_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def looks_like_hash(text: str) -> bool:
    """A profile or artifact hash as hdenv writes them (32 base32 characters)."""
    return len(text) == 32 and set(text) <= HASH_ALPHABET


def env_name_problem(name: str) -> str | None:
    """Why `name` cannot be set by a profile in all four shells, or None."""
    if not (name.isascii() and name.isidentifier()):
        return "not a variable name (letters, digits and '_', not starting with a digit)"
    if name in RESERVED_VARS:
        return RESERVED_VARS[name]
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"names starting with {prefix} are reserved"
    return None


def env_value_problem(value: str) -> str | None:
    """Why `value` cannot be a profile variable's value, or None. A line break would end
    the `export VAR=...` line Lmod and Environment Modules hand to the shell (the rest
    would run as code), so `hdenv modulefiles` refuses it; a NUL cannot be in an
    environment at all. Checked when the stack is read, not when the store is used."""
    if "\n" in value or "\r" in value:
        return ("it contains a line break, which Lmod and Environment Modules would hand"
                " to the shell as code")
    if "\0" in value:
        return "it contains a NUL character, which no environment can hold"
    return None
