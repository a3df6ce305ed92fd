"""Shared fixtures: a temporary store, the real `hdenv` program, tool checks.

Tests run the installed console script (next to the interpreter running
pytest), so they exercise what users run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared_sources() -> Path:
    """The offline mirror of upstream releases, `../shared/sources`.

    Looked for beside this checkout, then beside the repository it was cloned
    from (CI tests a fresh clone made elsewhere); HDENV_TEST_SOURCES overrides.
    """
    if os.environ.get("HDENV_TEST_SOURCES"):
        return Path(os.environ["HDENV_TEST_SOURCES"])
    candidates = [REPO.parent / "shared" / "sources"]
    git = shutil.which("git")
    origin = subprocess.run([git, "-C", str(REPO), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip() if git else ""
    origin = origin.removeprefix("file://")
    if origin.startswith("/"):  # a local clone; not ssh or https
        candidates.append(Path(origin).resolve().parent / "shared" / "sources")
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_SOURCES = _find_shared_sources()
EXAMPLES = REPO / "examples"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip locally when a tool or file is missing; under CI=true that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


@pytest.fixture
def shared_sources() -> Path:
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    return SHARED_SOURCES


@pytest.fixture
def hdenv_exe() -> str:
    exe = Path(sys.executable).parent / "hdenv"
    if not exe.exists():
        found = shutil.which("hdenv")
        assert found, "the hdenv console script is not installed"
        return found
    return str(exe)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def hdenv_env(store_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for running hdenv: private store, no user config, no mirrors."""
    env = dict(os.environ)
    env["HDENV_STORE"] = str(store_dir)
    env["HDENV_CONFIG"] = str(tmp_path / "no-config.toml")
    env["HDENV_SITE_CONFIG"] = ""  # no /etc/hdenv/config.toml of the machine running the tests
    (tmp_path / "no-config.toml").write_text("")
    env.pop("HDENV_MIRRORS", None)
    env["HDENV_JOBS"] = "2"
    return env


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_hdenv(hdenv_exe: str, hdenv_env: dict[str, str]) -> Runner:
    """run_hdenv("build", "stack.toml", env={...extra}) -> CompletedProcess (text)."""

    def run(*args: str, env: dict[str, str] | None = None, check: bool | None = None,
            cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        full_env = {**hdenv_env, **(env or {})}
        proc = subprocess.run([hdenv_exe, *args], env=full_env, capture_output=True, text=True,
                              cwd=cwd, timeout=timeout)
        if check:
            assert proc.returncode == 0, (
                f"hdenv {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    return run
