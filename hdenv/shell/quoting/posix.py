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

    def datagrams(self, host: str, port: int, lines: list[str]) -> str | None:
        """bash opens `/dev/udp/HOST/PORT` itself: four system calls a line, where loading
        Python's socket library was ~0.5 ms of every logged load. Its errors (an unknown
        host) are silenced and leave the load's status alone, as hdenv's own send does.
        A host with `/` would not be one path component, and a line not in ASCII could
        leave the shell in another encoding: those hdenv sends."""
        if "/" in host or not all(line.isascii() for line in lines):
            return None
        target = f"/dev/udp/{self.quote(host)}/{port}"
        sends = "; ".join(f"builtin printf '%s' {self.quote(line)} >{target}" for line in lines)
        return f"{{ {sends}; }} 2>/dev/null || :\n"

    def script(self, changes: Iterable[tuple[str, str | None]]) -> str:
        # Single quotes are on purpose: tell shellcheck so (SC2016). Only for
        # bash: an interactive zsh without INTERACTIVE_COMMENTS would run `#`.
        return "# shellcheck disable=SC2016\n" + super().script(changes)


class Zsh(PosixShell):
    name = "zsh"
