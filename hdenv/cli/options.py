"""Options several commands share; click only, so the group can use them without
importing the modules of the commands it has not been asked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def output_options(func: F) -> F:
    """`-t/--terse`, `--color` and `--redirect` (a no-op), as `module` takes them."""
    func = click.option("-t", "--terse", is_flag=True,
                        help="One entry per line, nothing else (for scripts).")(func)
    func = click.option("--color", type=click.Choice(["auto", "always", "never"]),
                        default="auto", show_default=True,
                        help="Colour the markers (auto: on a terminal, unless NO_COLOR).")(func)
    return click.option("--redirect", is_flag=True, hidden=True,
                        help="Accepted for Lmod's sake; output goes to stdout anyway.")(func)
