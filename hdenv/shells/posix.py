"""bash and zsh: identical for everything hdenv emits."""

from __future__ import annotations

from .base import Shell


class PosixShell(Shell):
    """Single quotes are fully literal in bash and zsh; only `'` needs care."""

    def quote(self, value: str) -> str:
        return "'" + value.replace("'", "'\\''") + "'"

    def set_var(self, name: str, value: str) -> str:
        return f"export {name}={self.quote(value)}"

    def unset_var(self, name: str) -> str:
        return f"unset {name}"


class Bash(PosixShell):
    name = "bash"


class Zsh(PosixShell):
    name = "zsh"
