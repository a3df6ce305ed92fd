"""`hdenv init --system --prefix DIR` (issue 22 item 9): batch jobs with an empty environment.

`env -i HOME=... bash -l job.sh` (what `sbatch --export=NONE` gives) has no
`hdenv` unless a login file defines it, as Lmod's /etc/profile.d/lmod.sh does.
The files are written under a test prefix, never the real /etc; bubblewrap
mounts them over /etc's (and a test /etc/profile, /etc/csh.login that source
them) so the real login shells read them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from test_shell_function import base_env
from test_shell_function import store as store  # noqa: F401  (the fixture)

HDENV = str(Path(sys.executable).parent / "hdenv")
LOGIN = {  # shell: (argv after the shell, job script)
    "bash": (["-l", "job"], 'hdenv load demo && hello-demo && ml && echo "DEMO=$DEMO"\n'),
    "zsh": (["-l", "job"], 'hdenv load demo && hello-demo && echo "DEMO=$DEMO"\n'),
    "fish": (["-l", "job"], 'hdenv load demo; and hello-demo; and echo "DEMO=$DEMO"\n'),
    "tcsh": (["-l"], None),  # tcsh -l takes no script: the job comes on stdin
}
TCSH_JOB = 'hdenv load demo && hello-demo && echo "DEMO=$DEMO"\n'


def _system(tmp_path: Path, store: Path) -> tuple[Path, list[str]]:  # noqa: F811
    prefix = tmp_path / "prefix"
    env = base_env(tmp_path, store)
    proc = subprocess.run([HDENV, "init", "--system", "--prefix", str(prefix)], env=env,
                          capture_output=True, text=True, check=True)
    paths = proc.stdout.splitlines()
    etc = prefix / "etc"
    (etc / "profile").write_text("PATH=/usr/local/bin:/usr/bin:/bin; export PATH\n"
                                 "for i in /etc/profile.d/*.sh; do . \"$i\"; done\n")
    (etc / "csh.login").write_text("setenv PATH /usr/local/bin:/usr/bin:/bin\n"
                                   "foreach f ( /etc/profile.d/*.csh )\n source $f\nend\n")
    (etc / "zprofile").write_text("emulate sh -c 'for i in /etc/profile.d/*.sh; do . $i; done'\n")
    return prefix, paths


@pytest.mark.parametrize("shell", sorted(LOGIN))
def test_9_clean_environment_login_shell_loads(shell: str, store: Path,  # noqa: F811
                                               tmp_path: Path) -> None:
    exe = require_tool(shell)
    bwrap = require_tool("bwrap")
    prefix, paths = _system(tmp_path, store)
    etc = prefix / "etc"
    assert paths == [str(etc / "profile.d/hdenv.sh"), str(etc / "profile.d/hdenv.csh"),
                     str(etc / "fish/conf.d/hdenv.fish")]
    home = tmp_path / "home"
    home.mkdir()
    args, job = LOGIN[shell]
    script = f"export HDENV_STORE={store}\n" if shell != "tcsh" else f"setenv HDENV_STORE {store}\n"
    if shell == "fish":
        script = f"set -gx HDENV_STORE {store}\n"
    (home / "job").write_text(script + (job or TCSH_JOB))
    mounts = ["--ro-bind", str(etc / "profile.d"), "/etc/profile.d",
              "--ro-bind", str(etc / "profile"), "/etc/profile",
              "--ro-bind", str(etc / "csh.login"), "/etc/csh.login",
              "--ro-bind", str(etc / "fish/conf.d"), "/etc/fish/conf.d"]
    if Path("/etc/zsh").is_dir():
        mounts += ["--ro-bind", str(etc / "zprofile"), "/etc/zsh/zprofile"]
    argv = [bwrap, "--dev-bind", "/", "/", *mounts, "--chdir", str(home),
            "env", "-i", f"HOME={home}", exe, *args]
    stdin = (home / "job").read_text() if shell == "tcsh" else None
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, input=stdin)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "hello from demo\n" in proc.stdout and "DEMO=two\n" in proc.stdout, proc.stderr
    if shell == "bash":
        assert "Currently loaded profiles:\n  1) demo/2\n" in proc.stdout  # ml, too


def test_9_system_files_are_for_everyone(store: Path, tmp_path: Path) -> None:  # noqa: F811
    prefix, paths = _system(tmp_path, store)
    for p in paths:
        text = Path(p).read_text()
        assert str(tmp_path) not in text  # no one's config or store baked in
        assert Path(p).stat().st_mode & 0o777 == 0o644
    proc = subprocess.run(["sh", "-n", paths[0]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_9_unwritable_prefix_is_one_line(tmp_path: Path) -> None:
    """Not root, or /etc read-only: one `hdenv: error:` line, exit 1, no traceback."""
    (tmp_path / "file-not-dir").write_text("")
    target = tmp_path / "file-not-dir" / "prefix"
    proc = subprocess.run([HDENV, "init", "--system", "--prefix", str(target)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"hdenv: error: cannot write {target}/etc/profile.d/hdenv.sh")
    assert proc.stderr.count("\n") == 1 and "internal error" not in proc.stderr
