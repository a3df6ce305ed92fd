"""Python packages outside a Python profile: importable while dependents build, after
`hdenv load` of the artifact alone, and after `module load` of its generated module
in real Lmod and Environment Modules (PYTHONPATH, as Spack's modules set it)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Runner, require, require_tool
from modulerunner import ModuleShell

PYVER = f"python{sys.version_info[0]}.{sys.version_info[1]}"
STACK = f"""
[stack]
name = "py"

[host.python]
programs = ["python3"]

[packages.pylib]
version = "1"
script = '''
d="$PREFIX/lib/{PYVER}/site-packages/hdenvmod"
mkdir -p "$d"
echo "VALUE = 42" > "$d/__init__.py"
'''

[packages.user]
version = "1"
deps = ["pylib"]
build-deps = ["python"]
script = '''
mkdir -p "$PREFIX/share"
python3 -c "import hdenvmod; print(hdenvmod.VALUE)" > "$PREFIX/share/value"
'''

[profiles.py]
packages = ["user"]
"""


@pytest.fixture
def built(run_hdenv: Runner, tmp_path: Path) -> dict[str, str]:
    require_tool("python3")
    (tmp_path / "py.toml").write_text(STACK)
    # --keep-going: each test below fails for its own reason, not for another's
    run_hdenv("build", "--keep-going", str(tmp_path / "py.toml"))
    rows = run_hdenv("list", "artifacts", check=True).stdout.splitlines()
    return {line.split("/")[0]: line.split()[0] for line in rows}


def test_a_dependency_is_importable_while_its_dependent_builds(
        built: dict[str, str], run_hdenv: Runner) -> None:
    assert "user" in built, "user failed to build: it could not import hdenvmod"
    user = Path(run_hdenv("path", built["user"], check=True).stdout.strip())
    assert (user / "share" / "value").read_text() == "42\n"


def test_loading_the_artifact_alone_makes_it_importable(
        built: dict[str, str], run_hdenv: Runner, hdenv_env: dict[str, str],
        tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "hdenv")
    script = f"""eval "$({exe} init bash)"
hdenv load {built['pylib']}
python3 -c "import hdenvmod; print('value', hdenvmod.VALUE)"
hdenv unload {built['pylib']}
echo "after: ${{PYTHONPATH-unset}}"
"""
    env = {**hdenv_env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "HOME": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout == "value 42\nafter: unset\n", proc.stderr


@pytest.mark.parametrize("kind", ["lmod", "em"])
def test_module_load_of_a_python_package_imports_it(built: dict[str, str], run_hdenv: Runner,
                                                    tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"modules-{kind}"
    fmt = "lmod" if kind == "lmod" else "tcl"
    run_hdenv("modulefiles", "--format", fmt, "--out", str(out), check=True)
    sh = ModuleShell(kind, tmp_path)
    proc = sh.run(out / "Core", ["module load pylib",
                                 "python3 -c 'import hdenvmod; print(hdenvmod.VALUE)'"])
    assert proc.stdout.strip().splitlines()[-1] == "42", proc.stderr


WHEEL = "packaging-24.1-py3-none-any.whl"
WHEEL_SHA = "5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124"
DISTRO_PYTHON = "/usr/bin/python3"  # Debian's: its sysconfig defaults to posix_local
PIP_STACK = """
[host.python]
programs = ["{python}"]

[packages.packaging]
version = "24.1"
sources = [{{ url = "file://{src}/{wheel}", sha256 = "{sha}", unpack = false }}]
build-deps = ["python"]
script = '''
python3 -m pip install --no-index --no-deps --no-build-isolation --ignore-installed --prefix "$PREFIX" {wheel}
'''
"""


def test_pip_install_into_the_prefix_uses_site_packages_whatever_the_distro_patched(
        run_hdenv: Runner, tmp_path: Path, shared_sources: Path) -> None:
    """Debian's pip would write PREFIX/local/lib/python3.X/dist-packages."""
    require(subprocess.run([DISTRO_PYTHON, "-m", "pip", "--version"], capture_output=True
                           ).returncode == 0, f"{DISTRO_PYTHON} has no pip (python3-pip)")
    stack = tmp_path / "pip.toml"
    stack.write_text(PIP_STACK.format(src=shared_sources, wheel=WHEEL, sha=WHEEL_SHA,
                                      python=DISTRO_PYTHON))
    run_hdenv("build", str(stack), check=True)
    (aid,) = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True
                                                     ).stdout.splitlines()
              if line.startswith("packaging/")]
    prefix = Path(run_hdenv("path", aid, check=True).stdout.strip())
    host = subprocess.run([DISTRO_PYTHON, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert (prefix / "lib" / f"python{host}" / "site-packages" / "packaging" /
            "__init__.py").is_file()
    assert not (prefix / "local").exists()


@pytest.mark.slow
def test_the_readme_python_packages_build_with_their_import_checks(
        run_hdenv: Runner, tmp_path: Path, shared_sources: Path) -> None:
    """The README's three shapes (wheel, sdist, C extension), built as written."""
    require(subprocess.run([DISTRO_PYTHON, "-c", "import setuptools, wheel, pip"],
                           capture_output=True).returncode == 0,
            f"{DISTRO_PYTHON} lacks pip, setuptools or wheel")
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## Python packages.*?```toml\n(.*?)```", readme, re.S)
    assert block is not None
    text = block.group(1).replace('programs = ["python3"]', f'programs = ["{DISTRO_PYTHON}"]')
    for name in ("packaging-24.1-py3-none-any.whl", "six-1.16.0.tar.gz",
                 "MarkupSafe-2.1.5.tar.gz"):
        digest = hashlib.sha256((shared_sources / name).read_bytes()).hexdigest()
        text = text.replace(f'url = ".../{name}", sha256 = "..."',
                            f'url = "file://{shared_sources}/{name}", sha256 = "{digest}"')
    (tmp_path / "py.toml").write_text(text)
    proc = run_hdenv("build", str(tmp_path / "py.toml"), check=True)
    assert "3 built" in proc.stderr
    for aid in run_hdenv("list", "artifacts", check=True).stdout.split():
        if aid.startswith(("six/", "markupsafe/", "packaging/")):
            log = (Path(run_hdenv("path", aid, check=True).stdout.strip()) / ".hdenv" /
                   "build.log").read_text()
            assert "hdenv: check: python3 -c 'import " in log
