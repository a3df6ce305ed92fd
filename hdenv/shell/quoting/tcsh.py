"""tcsh: single quotes do not stop history expansion and cannot hold a newline.

`!` is emitted as `\\!` outside the quotes (history expansion honours the
backslash) and `'` as `\\'`. A newline cannot be written portably inside a
`setenv` word, so a value containing one is refused with a clear error rather
than silently changed.
"""

from __future__ import annotations

from ...errors import UserError
from .base import Shell


class Tcsh(Shell):
    name = "tcsh"

    def quote(self, value: str) -> str:
        if "\n" in value or "\r" in value:
            raise UserError(f"tcsh cannot represent a value containing a newline: {value!r}")
        out: list[str] = ["'"]
        for ch in value:
            if ch in "'!":
                out.append(f"'\\{ch}'")
            else:
                out.append(ch)
        out.append("'")
        return "".join(out)

    def set_var(self, name: str, value: str) -> str:
        return f"setenv {name} {self.quote(value)}"

    def unset_var(self, name: str) -> str:
        return f"unsetenv {name}"
