"""`hdenv import` (issue 24): pinned Python requirements become recipes and a profile
whose Python imports each of them, built offline from the mirrors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SHARED_SOURCES, Runner, require

SHA = {
    "six": "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926",
    "packaging": "5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124",
    "markupsafe": "d283d37a890ba4c1ae73ffadf8046435c76e7bc2247bbb63c00bd1a709c6544b",
}
REQUIREMENTS = f"""# pip-compile --generate-hashes style
six==1.16.0 \\
    --hash=sha256:{SHA['six']} \\
    --hash=sha256:{"0" * 64}
packaging==24.1 --hash=sha256:{SHA['packaging']}
MarkupSafe==2.1.5 --hash=sha256:{SHA['markupsafe']}  # with its C speedups
"""
PYLOCK = f"""lock-version = "1.0"
created-by = "hand"

[[packages]]
name = "six"
version = "1.16.0"
sdist = {{ url = "https://files.pythonhosted.org/packages/source/s/six/six-1.16.0.tar.gz", hashes = {{ sha256 = "{SHA['six']}" }} }}

[[packages]]
name = "packaging"
version = "24.1"
wheels = [
  {{ url = "https://example.org/packaging-24.1-cp311-cp311-manylinux_2_17_x86_64.whl", hashes = {{ sha256 = "{"1" * 64}" }} }},
  {{ url = "https://files.pythonhosted.org/packages/py3/p/packaging/packaging-24.1-py3-none-any.whl", hashes = {{ sha256 = "{SHA['packaging']}" }} }},
]

[[packages]]
name = "MarkupSafe"
version = "2.1.5"
sdist = {{ url = "https://files.pythonhosted.org/packages/source/M/MarkupSafe/MarkupSafe-2.1.5.tar.gz", hashes = {{ sha256 = "{SHA['markupsafe']}" }} }}
"""
IMPORTS = ("import six, packaging.version, markupsafe._speedups;"
           "print(six.__file__); print(packaging.version.__file__);"
           " print(markupsafe._speedups.__file__)")


def _profile_imports(run_hdenv: Runner, stack: Path, name: str) -> list[str]:
    env = {"HDENV_MIRRORS": str(SHARED_SOURCES)}
    proc = run_hdenv("build", str(stack), env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = Path(run_hdenv("path", name, check=True).stdout.strip())
    ran = subprocess.run([str(profile / "bin" / "python3"), "-c", IMPORTS],
                         capture_output=True, text=True, env={})
    assert ran.returncode == 0, ran.stderr
    files = ran.stdout.splitlines()
    assert len(files) == 3 and all(f.startswith(str(profile)) for f in files), files
    return files


@pytest.mark.slow
def test_a_hashed_requirements_file_and_a_pylock_give_working_profiles(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    require(subprocess.run(["/usr/bin/python3", "-c", "import pip"]).returncode == 0,
            "python3-pip (for /usr/bin/python3) is not installed")
    env = {"HDENV_MIRRORS": str(SHARED_SOURCES)}
    (tmp_path / "requirements.txt").write_text(REQUIREMENTS)
    run_hdenv("import", str(tmp_path / "requirements.txt"), "--repo", str(tmp_path / "req"),
              "--stack", str(tmp_path / "req.toml"), "--name", "fromreq", env=env, check=True)
    assert "packaging-24.1-py3-none-any.whl" in (tmp_path / "req" / "packaging.toml").read_text()
    _profile_imports(run_hdenv, tmp_path / "req.toml", "fromreq")

    (tmp_path / "pylock.toml").write_text(PYLOCK)
    run_hdenv("import", str(tmp_path / "pylock.toml"), "--repo", str(tmp_path / "lock"),
              "--stack", str(tmp_path / "lock.toml"), "--name", "fromlock", check=True)
    text = (tmp_path / "lock" / "packaging.toml").read_text()
    assert "py3-none-any.whl" in text and "manylinux" not in text
    _profile_imports(run_hdenv, tmp_path / "lock.toml", "fromlock")


def test_requirements_that_pin_nothing_are_one_line_at_their_line(
        run_hdenv: Runner, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    env = {"HDENV_MIRRORS": str(SHARED_SOURCES)}
    for text, line, message in (
            ("# ok\nsix>=1.0\n", 2, "not a pinned requirement"),
            ("six==1.16.0\n", 1, "has no --hash=sha256"),
            (f"six==1.15.0 --hash=sha256:{SHA['six']}\n", 1, "no file with a listed hash")):
        req.write_text(text)
        proc = run_hdenv("import", str(req), "--repo", str(tmp_path / "repo"), env=env)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"{req}:{line}:" in proc.stderr and message in proc.stderr, proc.stderr
        assert not (tmp_path / "repo").exists()
    lock = tmp_path / "pylock.toml"
    lock.write_text('[[packages]]\nname = "x"\nversion = "1"\n'
                    'wheels = [{ url = "https://e.org/x-1-cp311-cp311-linux_x86_64.whl",'
                    f' hashes = {{ sha256 = "{"2" * 64}" }} }}]\n')
    proc = run_hdenv("import", str(lock), "--repo", str(tmp_path / "repo"))
    assert proc.returncode == 2 and "no sdist or pure-Python wheel" in proc.stderr
