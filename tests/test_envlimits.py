"""Loads that would break every later command are refused before anything is evaluated."""

from __future__ import annotations

import pytest

from hdenv.errors import UserError
from hdenv.shell import envlimits


def test_one_variable_over_the_kernel_limit_is_refused() -> None:
    if envlimits.ONE_STRING is None:
        pytest.skip("no per-string limit on this system")
    with pytest.raises(UserError, match="would make BIG 140005 bytes long"):
        envlimits.check({}, {"BIG": "x" * 140_000}, "hdenv load big")
    envlimits.check({}, {"BIG": "x" * 100_000}, "hdenv load big")
    # already over before: an unload that leaves it so is not refused
    envlimits.check({"BIG": "x" * 140_000, "A": "1"}, {"BIG": "x" * 140_000}, "hdenv unload a")


def test_the_whole_environment_keeps_room_for_arguments() -> None:
    half = envlimits._arg_max() // 2
    many = {f"V{i}": "x" * 100_000 for i in range(half // 100_000 + 1)}
    with pytest.raises(UserError, match="would make the environment"):
        envlimits.check({}, many, "hdenv load many")
    envlimits.check(many, {k: v for k, v in list(many.items())[:-1]}, "hdenv unload many")
