"""Builds through the real `hdenv` program: patches, sources kept as files, the store path.

Real upstream files only: the packaging wheel from PyPI (../shared/sources)
installed by the host's pip, real `patch -p1` on a real tree.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from conftest import Runner, require, require_tool

from hdenv.build.builder import env_var_name


def artifact_path(run_hdenv: Runner, prefix: str) -> Path:
    ids = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True).stdout.splitlines()]
    (aid,) = [i for i in ids if i.startswith(prefix)]
    return Path(run_hdenv("path", aid, check=True).stdout.strip())


PATCHED = """
[packages.greeting]
version = "1.0"
sources = [{ path = "src" }]
patches = ["fix.patch"]
script = '''
mkdir -p "$PREFIX/share"
cp greeting.txt "$PREFIX/share/"
'''
"""

PATCH = """--- a/greeting.txt
+++ b/greeting.txt
@@ -1 +1 @@
-{old}
+{new}
"""


def test_patch_is_applied_and_changes_the_id(run_hdenv: Runner, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "greeting.txt").write_text("hello\n")
    (tmp_path / "fix.patch").write_text(PATCH.format(old="hello", new="patched hello"))
    stack = tmp_path / "stack.toml"
    stack.write_text(PATCHED)
    proc = run_hdenv("build", str(stack), check=True)
    prefix = artifact_path(run_hdenv, "greeting/")
    assert (prefix / "share" / "greeting.txt").read_text() == "patched hello\n"
    assert "applying 01-fix.patch" in (prefix / ".hdenv" / "build.log").read_text()
    spec = json.loads((prefix / ".hdenv" / "spec.json").read_text())
    assert spec["patches"][0].startswith("sha256:")
    # the same patch again: nothing to build; another patch: a new id
    assert run_hdenv("build", str(stack), "--dry-run", check=True).stdout == ""
    (tmp_path / "fix.patch").write_text(PATCH.format(old="hello", new="other hello"))
    dry = run_hdenv("build", str(stack), "--dry-run", check=True).stdout
    assert "would build greeting/1.0/" in dry and "patches" in dry
    assert proc.returncode == 0


PATCHED_URL = """
[packages.greeting]
version = "1.0"
sources = [{{ path = "src" }}]
patches = [{{ url = "{url}", sha256 = "{sha256}" }}]
script = '''
mkdir -p "$PREFIX/share"
cp greeting.txt "$PREFIX/share/"
'''
"""


def test_patch_from_a_url_is_checked_then_applied(run_hdenv: Runner, store_dir: Path,
                                                  tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "greeting.txt").write_text("hello\n")
    patch = tmp_path / "elsewhere" / "fix.patch"
    patch.parent.mkdir()
    patch.write_text(PATCH.format(old="hello", new="fetched hello"))
    good = hashlib.sha256(patch.read_bytes()).hexdigest()
    stack = tmp_path / "stack.toml"
    # a wrong sha256: like a URL source, checked when fetched; the package is not built
    # and the bytes are not stored under the wrong name
    stack.write_text(PATCHED_URL.format(url=patch.as_uri(), sha256="0" * 64))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 1, proc.stderr
    assert f"hash mismatch: expected sha256:{'0' * 64}, got sha256:{good}" in proc.stderr
    # refused before any build started (every source and patch is fetched first)
    assert proc.stderr.strip().splitlines()[-2] == ("hdenv: error: sources that could not be"
                                                    " had (nothing was built):")
    assert proc.stderr.strip().splitlines()[-1].startswith("  greeting: could not get sha256:")
    assert "greeting/" not in run_hdenv("list", "artifacts", check=True).stdout
    assert not (store_dir / "src" / "sha256" / ("0" * 64)).exists()
    # the right one: fetched, its hash in the spec, applied before the script
    stack.write_text(PATCHED_URL.format(url=patch.as_uri(), sha256=good))
    run_hdenv("build", str(stack), check=True)
    prefix = artifact_path(run_hdenv, "greeting/")
    assert (prefix / "share" / "greeting.txt").read_text() == "fetched hello\n"
    assert "applying 01-fix.patch" in (prefix / ".hdenv" / "build.log").read_text()
    spec = json.loads((prefix / ".hdenv" / "spec.json").read_text())
    assert spec["patches"] == [f"sha256:{good}"]


def test_patch_that_does_not_apply_fails_the_build(run_hdenv: Runner, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "greeting.txt").write_text("something else\n")
    (tmp_path / "fix.patch").write_text(PATCH.format(old="hello", new="patched"))
    stack = tmp_path / "stack.toml"
    stack.write_text(PATCHED)
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 1
    assert "FAILED greeting/" in proc.stderr and "Hunk #1 FAILED" in proc.stderr


def test_missing_patch_file_is_a_one_line_input_error(run_hdenv: Runner, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    stack = tmp_path / "stack.toml"
    stack.write_text(PATCHED)
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr.startswith("hdenv: error: ") and "fix.patch" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


WHEEL = """
[host.python]
programs = ["/usr/bin/python3.11"]

[packages.packaging]
version = "24.1"
sources = [{{ url = "https://files.pythonhosted.org/packages/py3/p/packaging/packaging-24.1-py3-none-any.whl", sha256 = "5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124", unpack = false }}]
deps = ["python"]
script = '''
ls -l > "$TMPDIR/listing"
python3.11 -m pip install --no-deps --no-index --no-cache-dir --disable-pip-version-check \\
    --target "$PREFIX/lib/python3.11/site-packages" packaging-24.1-py3-none-any.whl
'''

[profiles.py]
packages = ["packaging"]
"""


def test_wheel_kept_as_file_is_pip_installed_into_a_profile(run_hdenv: Runner, tmp_path: Path,
                                                             shared_sources: Path) -> None:
    require(Path("/usr/bin/python3.11").is_file(), "Debian's python3.11 is not installed")
    require(subprocess.run(["/usr/bin/python3.11", "-m", "pip", "--version"],
                           capture_output=True).returncode == 0, "python3-pip is not installed")
    stack = tmp_path / "stack.toml"
    stack.write_text(WHEEL.format())
    run_hdenv("build", str(stack), env={"HDENV_MIRRORS": str(shared_sources)}, check=True)
    profile = Path(run_hdenv("path", "py", check=True).stdout.strip())
    out = subprocess.run(
        ["env", "-i", str(profile / "bin" / "python3.11"), "-c",
         "import packaging, packaging.version as v; print(packaging.__file__); "
         "print(v.Version('1.0') < v.Version('1.1'))"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[1] == "True"
    assert out[0].startswith(str(profile)) or "/artifacts/packaging/24.1/" in out[0]
    prefix = artifact_path(run_hdenv, "packaging/")
    (source,) = json.loads((prefix / ".hdenv" / "spec.json").read_text())["sources"]
    assert source["unpack"] is False and source["filename"] == "packaging-24.1-py3-none-any.whl"


def test_store_path_with_colon_is_refused(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "s.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = "true"\n')
    bad = tmp_path / "a:b"
    proc = run_hdenv("build", str(stack), env={"HDENV_STORE": str(bad)})
    assert proc.returncode == 2
    assert proc.stderr.startswith("hdenv: error: store path") and "':'" in proc.stderr
    assert not bad.exists()


def test_store_path_with_a_control_character_is_refused(run_hdenv: Runner,
                                                       tmp_path: Path) -> None:
    stack = tmp_path / "s.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = "true"\n')
    for name, shown in (("a\nb", "'\\n'"), ("a\x01b", "'\\x01'"), ("a\x7fb", "'\\x7f'")):
        bad = tmp_path / name
        proc = run_hdenv("build", str(stack), env={"HDENV_STORE": str(bad)})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("hdenv: error: store path") and shown in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not bad.exists()


def test_store_path_with_space_warns_once_and_builds(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("sh")
    stack = tmp_path / "s.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = \'mkdir -p "$PREFIX/x"\'\n')
    proc = run_hdenv("build", str(stack), env={"HDENV_STORE": str(tmp_path / "my store")},
                     check=True)
    warnings = [line for line in proc.stderr.splitlines() if "warning: store path" in line]
    assert len(warnings) == 1 and "' '" in warnings[0]


def test_env_var_name() -> None:
    assert env_var_name("py-yaml.x") == "HDENV_DEP_PY_YAML_X"
