"""Host libraries declared by pkg-config module (issue 27): `[host.yaml] pkgconfig =
["yaml-0.1"]` with no programs, libraries or packages. The module's `.pc` file names
the package that brings its headers and libraries; only the named `.pc` files are
exposed; a build in the jail compiles against it through pkg-config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import Runner, require, require_tool
from projects import artifact_path

USES_YAML = """#include <yaml.h>
#include <stdio.h>
int main(void) { printf("libyaml %s\\n", yaml_get_version_string()); return 0; }
"""


def _stack(tmp_path: Path, modules: str, script: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "y.c").write_text(USES_YAML)
    stack = tmp_path / "pc.toml"
    stack.write_text(f"""[stack]
name = "pc"

[host.gcc]
programs = ["gcc"]
family = "compiler"

[host.pkgconf]
programs = ["pkg-config"]

[host.lib]
pkgconfig = {modules}

[packages.y]
version = "1.0"
sources = [{{ path = "src" }}]
build-deps = ["gcc", "pkgconf"]
deps = ["lib"]
script = '''
mkdir -p "$PREFIX/bin"
{script}
'''
""")
    return stack


def test_a_library_declared_by_its_pkg_config_module_builds_and_runs(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("gcc")
    require_tool("pkg-config")
    require(Path("/usr/include/yaml.h").is_file(), "libyaml-dev is not installed")
    stack = _stack(tmp_path, '["yaml-0.1"]',
                   'gcc -o "$PREFIX/bin/y" y.c $(pkg-config --cflags --libs yaml-0.1)')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 0, proc.stderr[-2000:]
    profile = Path(run_hdenv("path", "pc", check=True).stdout.strip())
    ran = subprocess.run([str(profile / "bin" / "y")], capture_output=True, text=True)
    assert ran.stdout.startswith("libyaml 0."), ran.stderr
    host = artifact_path(run_hdenv, "lib")
    assert sorted(p.name for p in (host / "lib" / "pkgconfig").iterdir()) == ["yaml-0.1.pc"]
    pc = (host / "lib" / "pkgconfig" / "yaml-0.1.pc").read_text()
    assert f"prefix={host}" in pc  # points into the artifact, not /usr
    spec = json.loads((host / ".hdenv" / "spec.json").read_text())
    assert spec["pkgconfig_modules"] == ["yaml-0.1"]
    assert spec["packages"]["libyaml-dev"]["pkgconfig_only"] == ["yaml-0.1"]
    assert spec["packages"]["libyaml-dev"]["version"]  # the package's version is in the id


def test_only_the_named_modules_of_a_package_are_exposed(run_hdenv: Runner,
                                                         tmp_path: Path) -> None:
    require_tool("gcc")
    require(Path("/usr/lib/x86_64-linux-gnu/pkgconfig/ompi-c.pc").exists(),
            "libopenmpi-dev is not installed")
    stack = _stack(tmp_path, '["ompi-c"]', 'true')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 0, proc.stderr[-2000:]
    host = artifact_path(run_hdenv, "lib")
    # libopenmpi-dev has ompi.pc, ompi-cxx.pc, orte.pc... beside it
    assert sorted(p.name for p in (host / "lib" / "pkgconfig").iterdir()) == ["ompi-c.pc"]
    assert list(host.glob("lib/libmpi.so*")) or list(host.glob("lib/*/libmpi.so*"))


def test_an_unknown_module_is_one_line_at_its_declaration(run_hdenv: Runner, tmp_path: Path,
                                                          store_dir: Path) -> None:
    stack = _stack(tmp_path, '["no-such-module-1.0"]', 'true')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{stack}:11:" in proc.stderr and "no pkg-config module 'no-such-module-1.0'" \
        in proc.stderr
    assert not store_dir.exists()
    stack = _stack(tmp_path, '["not a module"]', 'true')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2 and "neither an absolute directory nor a pkg-config module" \
        in proc.stderr
