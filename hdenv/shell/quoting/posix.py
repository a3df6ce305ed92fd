"""bash and zsh: identical for everything hdenv emits."""

from __future__ import annotations

from .base import Shell

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


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

    def script(self, changes: Iterable[tuple[str, str | None]]) -> str:
        # Single quotes are on purpose: tell shellcheck so (SC2016). Only for
        # bash: an interactive zsh without INTERACTIVE_COMMENTS would run `#`.
        return "# shellcheck disable=SC2016\n" + super().script(changes)


class Zsh(PosixShell):
    name = "zsh"
