"""fish: single quotes where only `\\` and `'` are special."""

from __future__ import annotations

from .base import Shell


class Fish(Shell):
    name = "fish"

    def quote(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def set_var(self, name: str, value: str) -> str:
        # fish splits variables named *PATH on ':' and joins them again on
        # export, so the exported string is exactly `value`.
        return f"set -gx {name} {self.quote(value)}"

    def unset_var(self, name: str) -> str:
        return f"set -e -g {name}"
