"""Profile names and profile environment variable names: one rule for every layer."""

from __future__ import annotations

import pytest

from hdenv.validate import env_name_problem, profile_name_problem


@pytest.mark.parametrize("name", ["demo", "demo-gcc-12.2", "a+b", "_x", "9lives"])
def test_good_profile_names(name: str) -> None:
    assert profile_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "current", "../x", "a/b", "-a", ".hidden", "a b", "x" * 201,
                                  "é"])
def test_bad_profile_names(name: str) -> None:
    assert profile_name_problem(name) is not None


@pytest.mark.parametrize("name", ["CFLAGS", "DEMO_HOME", "_private", "lower_case"])
def test_good_env_names(name: str) -> None:
    assert env_name_problem(name) is None


@pytest.mark.parametrize("name", ["A;touch x;B", "1X", "A-B", "ÉTÉ", "", "PATH", "HDENV_RECORD",
                                  "HDENV_SAVED_X", "status", "path", "UID", "BASH_ENV"])
def test_bad_env_names(name: str) -> None:
    assert env_name_problem(name) is not None
