"""`hdenv create` (issue 24): a recipe from a release archive, through the real program.

The slow test runs it on every archive of ../shared/sources and builds what it
wrote, untouched: all but Lua build as written (Lua's Makefile installs into
INSTALL_TOP, not PREFIX, which the template's last line catches and names).
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import SHARED_SOURCES, Runner, require, require_tool


def test_create_refuses_what_is_not_an_archive_and_leaves_the_store_alone(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    notes = tmp_path / "notes-1.0.tar.gz"
    notes.write_text("just text\n")
    proc = run_hdenv("create", "--repo", str(tmp_path / "repo"), str(notes))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "is not an archive" in proc.stderr
    assert not store_dir.exists() and not (tmp_path / "repo").exists()
    proc = run_hdenv("create", "--repo", str(tmp_path / "repo"), str(tmp_path / "absent.tgz"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    odd = tmp_path / "weird.tar"
    with tarfile.open(odd, "w") as tar:
        tar.add(notes, arcname="x/configure")
    proc = run_hdenv("create", "--repo", str(tmp_path / "repo"), str(odd))
    assert proc.returncode == 2 and "give --name and --version" in proc.stderr


def _tool(tmp_path: Path, version: str, build_file: str) -> Path:
    src = tmp_path / f"src-{version}"
    (src / f"tool-{version}").mkdir(parents=True)
    (src / f"tool-{version}" / build_file).write_text(
        "find_package(ZLIB REQUIRED)\nfind_package(Frobnicate)\n")
    path = tmp_path / f"tool-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / f"tool-{version}", arcname=f"tool-{version}")
    return path


def test_create_detects_guesses_known_dependencies_and_adds_versions(
        run_hdenv: Runner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = _tool(tmp_path, "1.0", "CMakeLists.txt")
    out = run_hdenv("create", "--repo", str(repo), str(first), check=True).stdout.strip()
    assert out == str(repo / "tool.toml")
    text = (repo / "tool.toml").read_text()
    assert 'build-system = "cmake"' in text and 'build-deps = ["cmake"]' in text
    assert 'deps = ["zlib"]' in text  # a recipe exists (built-in): a dependency
    assert "no recipe in the repositories: frobnicate" in text  # a guess left to the author
    stored = run_hdenv("fetch", str(first), check=True).stdout.strip()
    assert f'sha256 = "{stored.removeprefix("sha256:")}"' in text
    run_hdenv("create", "--repo", str(repo), str(_tool(tmp_path, "1.1", "CMakeLists.txt")),
              check=True)
    info = run_hdenv("info", "tool", "--stack", str(_stack(tmp_path, repo)), check=True).stdout
    assert "versions  1.1, 1.0 (default 1.1)" in info
    again = run_hdenv("create", "--repo", str(repo), str(first))
    assert again.returncode == 2 and "already has version 1.0" in again.stderr


def _stack(tmp_path: Path, repo: Path, names: list[str] | None = None) -> Path:
    path = tmp_path / "stack.toml"
    packages = "".join(f"[packages.{n}]\n" for n in names or [])
    path.write_text(f'[stack]\nname = "created"\nrepos = ["{repo}", "builtin"]\n'
                    f'toolchain = ["gcc"]\n{packages}')
    return path


@pytest.mark.slow
def test_recipes_created_from_every_shared_archive_build_as_written(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    for tool in ("gcc", "cmake", "make"):
        require_tool(tool)
    require(subprocess.run(["/usr/bin/python3", "-c", "import pip"]).returncode == 0,
            "python3-pip (for /usr/bin/python3) is not installed")
    repo = tmp_path / "repo"
    archives = sorted(p for p in SHARED_SOURCES.iterdir()
                      if re.search(r"\.(tar\.gz|tar\.bz2|whl)$", p.name))
    names = []
    for archive in archives:
        written = Path(run_hdenv("create", "--repo", str(repo), str(archive),
                                 check=True).stdout.strip())
        names.append(written.stem)
    assert sorted(names) == ["hello", "json-c", "libpng", "libyaml", "lua", "markupsafe",
                             "packaging", "pyyaml", "six", "zlib"]
    stack = _stack(tmp_path, repo, names)
    proc = run_hdenv("build", "--keep-going", str(stack), timeout=1200)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 build(s) failed: lua" in proc.stderr, proc.stderr[-3000:]
    assert "the install step put nothing into $PREFIX" in proc.stderr
    built = {line.split("/")[0] for line in run_hdenv("list", "artifacts", check=True)
             .stdout.splitlines()}
    assert built >= {n for n in names if n != "lua"}
    # PyYAML without a libyaml dependency: the jail hides the system's yaml.h, so it is
    # pure Python (never linked to the system's libyaml behind the stack's back)
    (pyyaml,) = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True)
                 .stdout.splitlines() if line.startswith("pyyaml/")]
    prefix = Path(run_hdenv("path", pyyaml, check=True).stdout.strip())
    assert list(prefix.glob("lib/python3*/site-packages/yaml/__init__.py"))
    assert not list(prefix.glob("lib/python3*/site-packages/yaml/_yaml*.so"))
    # the one edit Lua needs, and it builds
    text = (repo / "lua.toml").read_text().replace(
        'build-system = "make"', 'build-system = "make"\ninstall-args = ["INSTALL_TOP=$PREFIX"]')
    (repo / "lua.toml").write_text(text)
    run_hdenv("build", str(stack), check=True, timeout=600)
    profile = Path(run_hdenv("path", "created", check=True).stdout.strip())
    lua = subprocess.run([str(profile / "bin" / "lua"), "-v"], capture_output=True, text=True)
    assert lua.stdout.startswith("Lua 5.4.4")
