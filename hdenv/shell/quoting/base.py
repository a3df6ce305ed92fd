"""The abstract shell: quoting and the two statements a load needs.

Everything per-shell that Python generates goes through one of these classes,
so the rules for a shell live in one place (the init code itself lives in
`templates/`). Kept to the stdlib because `fastload` imports it on every load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ...errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc costs ms on every load
    from collections.abc import Iterable


def check_name(name: str) -> str:
    """Refuse names a shell would parse as code; they come from profile files."""
    # isidentifier() alone would accept non-ASCII letters, which shells do not.
    if not (name.isascii() and name.isidentifier()):
        raise UserError(f"invalid environment variable name {name!r}")
    return name


class Shell(ABC):
    """One shell's syntax. Subclasses are stateless; one instance each is enough."""

    name: str = ""

    @abstractmethod
    def quote(self, value: str) -> str:
        """A word that the shell reads back as exactly `value`."""

    @abstractmethod
    def set_var(self, name: str, value: str) -> str:
        """Set and export `name`."""

    @abstractmethod
    def unset_var(self, name: str) -> str:
        """Remove `name` from the environment."""

    def datagrams(self, host: str, port: int, lines: list[str]) -> str | None:
        """Code that sends each line as one UDP datagram to HOST:PORT (the usage log's
        `udp://`), if this shell can without starting a program; None: hdenv sends them."""
        return None

    def script(self, changes: Iterable[tuple[str, str | None]]) -> str:
        """Statements applying (name, value-or-None) changes in order."""
        lines = [
            self.unset_var(check_name(n)) if v is None else self.set_var(check_name(n), v)
            for n, v in changes
        ]
        return "".join(line + "\n" for line in lines)
