"""The Jinja2 environment every stack-file template is rendered in.

A stack file is input from whoever wrote it, and `hdenv build --dry-run` or
`hdenv show` on a stranger's stack file must be safe. Jinja2's own
`ImmutableSandboxedEnvironment` stops templates from reaching Python internals
(`''.__class__`, `cycler.__init__.__globals__`) and from mutating values; on
top of it, the operators that can make a huge value out of a short expression
(`9 ** 9 ** 9`, `'x' * 10 ** 12`) are limited, so rendering cannot hang or
eat the machine's memory. Violations raise `jinja2.exceptions.SecurityError`.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RESULT = 1 << 20  # characters or items a `*` may produce
MAX_EXPONENT_BITS = 4096  # bits of an integer `**` result


class StackSandbox(ImmutableSandboxedEnvironment):
    """Sandboxed, StrictUndefined, no autoescape; `*` and `**` bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False,
                         keep_trailing_newline=True)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) \
                        and len(seq) * n > MAX_RESULT:
                    raise SecurityError(f"'*' would make a value of {len(seq) * n} items"
                                        f" (at most {MAX_RESULT})")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) \
                and right > 0 and abs(left) > 1 and right * abs(left).bit_length() > \
                MAX_EXPONENT_BITS:
            raise SecurityError(f"'{left} ** {right}' is too large")
        return super().call_binop(context, operator, left, right)
