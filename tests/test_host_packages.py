"""Host software by distro package (issue 23): `[host.NAME] packages = ["libyaml-dev"]`
captures every file of the installed package into the host artifact (headers,
libraries, pkg-config files with their prefix pointing into the artifact); the
package names and versions enter the id, `hdenv show` lists them, and a package
that is not installed is one line with FILE:LINE."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import Runner, require, require_tool

from hdenv import hostpkgs
from hdenv.build.host import HostRequest, describe, package_layout
from hdenv.store.hashing import spec_hash
from hdenv.store.layout import Store

HOSTS = """
[host.gcc]
programs = ["gcc", "cc", "ld", "as"]
family = "compiler"

[host.pkgconf]
programs = ["pkg-config"]

[host.yaml]
packages = [{packages}]
"""

PROGRAM = """
[packages.yamlprog]
version = "1"
deps = ["yaml"]
build-deps = ["gcc", "pkgconf"]
script = '''
printf '#include <yaml.h>\\n#include <stdio.h>\\nint main(void){printf("%%s\\\\n", yaml_get_version_string());return 0;}\\n' > y.c
mkdir -p "$PREFIX/bin" "$PREFIX/share"
gcc y.c -o "$PREFIX/bin/yamlprog" $(pkg-config --cflags --libs yaml-0.1)
pkg-config --variable=prefix yaml-0.1 > "$PREFIX/share/pc-prefix"
'''
"""


def installed(name: str) -> str | None:
    if hostpkgs.manager() is None:
        return None
    try:
        return hostpkgs.installed([name], "test")[0].version
    except Exception:  # noqa: BLE001 - not installed here
        return None


def ids(run_hdenv: Runner, name: str) -> list[str]:
    return [line.split()[0] for line in run_hdenv("list", "artifacts", check=True)
            .stdout.splitlines() if line.startswith(name + "/")]


def test_a_package_declared_by_name_builds_and_runs(run_hdenv: Runner, tmp_path: Path) -> None:
    version = installed("libyaml-dev")
    require(version is not None, "libyaml-dev is not installed (apt-get install libyaml-dev)")
    assert version is not None
    require_tool("gcc")
    require_tool("pkg-config")
    stack = tmp_path / "s.toml"
    stack.write_text(HOSTS.format(packages='"libyaml-dev"') + PROGRAM)
    run_hdenv("build", str(stack), check=True)
    (yaml,) = ids(run_hdenv, "yaml")
    host = Path(run_hdenv("path", yaml, check=True).stdout.strip())
    assert (host / "include" / "yaml.h").resolve() == Path("/usr/include/yaml.h")
    pc = (host / "lib" / "pkgconfig" / "yaml-0.1.pc").read_text()
    assert f"prefix={host}\n" in pc  # a real file pointing into the artifact
    (prog,) = ids(run_hdenv, "yamlprog")
    prefix = Path(run_hdenv("path", prog, check=True).stdout.strip())
    assert (prefix / "share" / "pc-prefix").read_text() == f"{host}\n"
    ran = subprocess.run([str(prefix / "bin" / "yamlprog")], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip() == version.split("-")[0], ran
    shown = run_hdenv("show", yaml, check=True).stdout
    assert f"package:    libyaml-dev {version} (deb, " in shown
    # the declaration decides the id: the same one elsewhere is the same artifact, one
    # more package a new one
    again = tmp_path / "again"
    again.mkdir()
    (again / "s.toml").write_text(HOSTS.format(packages='"libyaml-dev"'))
    run_hdenv("build", str(again / "s.toml"), check=True)
    assert ids(run_hdenv, "yaml") == [yaml]
    if installed("zlib1g-dev") is not None:
        (again / "s.toml").write_text(HOSTS.format(packages='"libyaml-dev", "zlib1g-dev"'))
        run_hdenv("build", str(again / "s.toml"), check=True)
        assert len(ids(run_hdenv, "yaml")) == 2


@pytest.mark.parametrize("packages,needle", [
    ('"hdenv-no-such-package"', "package 'hdenv-no-such-package' is not installed"),
    ('"bad name!"', "host.yaml.packages: 'bad name!' is not a package name"),
])
def test_a_package_that_is_not_there_is_one_line(run_hdenv: Runner, tmp_path: Path,
                                                 store_dir: Path, packages: str,
                                                 needle: str) -> None:
    require(hostpkgs.manager() is not None, "no dpkg or rpm on this host")
    stack = tmp_path / "s.toml"
    stack.write_text(HOSTS.format(packages=packages))
    for flags in ([], ["--dry-run"]):
        proc = run_hdenv("build", *flags, str(stack))
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert re.match(rf"hdenv: error: {re.escape(str(stack))}:(9|10): ", line), line
        assert needle in line, line
    assert not (store_dir / "artifacts").exists()


def test_package_files_land_where_builds_look() -> None:
    assert package_layout("/usr/include/yaml.h") == ["include/yaml.h"]
    assert package_layout("/usr/lib/x86_64-linux-gnu/libyaml.so") == [
        "lib/x86_64-linux-gnu/libyaml.so", "lib/libyaml.so"]
    assert package_layout("/usr/lib/x86_64-linux-gnu/pkgconfig/yaml-0.1.pc") == [
        "lib/x86_64-linux-gnu/pkgconfig/yaml-0.1.pc", "lib/pkgconfig/yaml-0.1.pc"]
    assert package_layout("/lib/x86_64-linux-gnu/libz.so.1") == [
        "lib/x86_64-linux-gnu/libz.so.1", "lib/libz.so.1"]


def test_an_upgraded_package_gives_a_new_id_and_an_unrelated_one_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded version of each named package is in the host spec, so an upgrade of
    libyaml-dev is a new artifact; a package the declaration does not name never is.
    (The host's real dpkg answers, with one version changed as an upgrade would.)"""
    version = installed("libyaml-dev")
    require(version is not None, "libyaml-dev is not installed (apt-get install libyaml-dev)")
    store = Store(tmp_path / "store").ensure()
    request = HostRequest("yaml", (), packages=("libyaml-dev",))
    before = spec_hash(describe(store, request)[0])
    real = hostpkgs.installed

    def upgraded(names: list[str], who: str) -> list[hostpkgs.HostPackage]:
        return [hostpkgs.HostPackage(p.name, p.version + "+upgrade1", p.arch, p.manager,
                                     p.files) if p.name == "libyaml-dev" else p
                for p in real(names, who)]

    monkeypatch.setattr(hostpkgs, "installed", upgraded)
    assert spec_hash(describe(store, request)[0]) != before
    monkeypatch.setattr(hostpkgs, "installed", real)
    assert spec_hash(describe(store, request)[0]) == before  # nothing else moves it
