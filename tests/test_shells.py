"""Quoting and generated code, checked by the real shells and shellcheck."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from shellfixtures import AWKWARD_DIR, HOSTILE, make_profile

from hdenv.errors import UserError
from hdenv.shell import shellcmd
from hdenv.shell.quoting import get_shell, supported

NASTY = [HOSTILE, "", "plain", "trailing\\", "\\\\double", "'", "''", "\\'", "a b\tc",
         "$(echo x)", "${HOME}", "!!", "!$", "*?[a]", "~", "-n", "%s", "a;b|c&d", "#x"]
NEWLINE = "line1\nline2"


need = require_tool


def shell_prints(shell: str, code: str, tmp_path: Path) -> str:
    """Run `code` in the real shell (from a file) and return its stdout."""
    exe = need(shell)
    script = tmp_path / f"s.{shell}"
    script.write_text(code, encoding="utf-8")
    flags = {"bash": ["--norc"], "zsh": ["-f"], "fish": ["--no-config"], "tcsh": ["-f"]}[shell]
    proc = subprocess.run([exe, *flags, str(script)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("shell", supported())
def test_set_var_round_trips(shell: str, tmp_path: Path) -> None:
    sh = get_shell(shell)
    values = NASTY + ([] if shell == "tcsh" else [NEWLINE])
    code = sh.script((f"V{i}", v) for i, v in enumerate(values))
    code += f"{sh.unset_var('V0')}\n"
    code += "env -0\n"
    out = shell_prints(shell, code, tmp_path)
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    assert "V0" not in env
    for i, value in enumerate(values[1:], start=1):
        assert env[f"V{i}"] == value, (shell, value)


def test_tcsh_refuses_newlines() -> None:
    with pytest.raises(UserError, match="newline"):
        get_shell("tcsh").quote(NEWLINE)


def test_unknown_shell_lists_supported() -> None:
    with pytest.raises(UserError) as info:
        get_shell("powershell")
    for name in ("bash", "zsh", "fish", "tcsh"):
        assert name in str(info.value)


def test_bad_variable_name_refused() -> None:
    with pytest.raises(UserError, match="variable name"):
        get_shell("bash").script([("A;rm -rf /", "x")])


def test_init_detects_shell_with_shellingham(monkeypatch: pytest.MonkeyPatch) -> None:
    import shellingham

    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("zsh", "/usr/bin/zsh"))
    assert "(( $+functions[compdef] ))" in shellcmd.init_code()
    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("nu", "/usr/bin/nu"))
    with pytest.raises(UserError, match="supported: bash, zsh, fish, tcsh"):
        shellcmd.init_code()


@pytest.fixture
def load_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    store = tmp_path / AWKWARD_DIR
    make_profile(store, "demo", env={"HOSTILE": HOSTILE, "HOME_OF": "@@HDENV_PROFILE@@"})
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("MANPATH", raising=False)

    def code(shell: str) -> str:
        return shellcmd.env_code("demo", shell, store)

    return code


def test_bash_code_passes_shellcheck(tmp_path: Path, load_code) -> None:  # type: ignore[no-untyped-def]
    exe = need("shellcheck")
    for name, text in (("init.sh", shellcmd.init_code("bash")), ("load.sh", load_code("bash"))):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run([exe, "-s", "bash", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("shell,check", [("zsh", ["-n"]), ("fish", ["--no-execute"]),
                                         ("tcsh", ["-n", "-f"]), ("bash", ["-n"])])
def test_code_parses(shell: str, check: list[str], tmp_path: Path, load_code) -> None:  # type: ignore[no-untyped-def]
    exe = need(shell)
    for name, text in (("init", shellcmd.init_code(shell)), ("load", load_code(shell))):
        path = tmp_path / f"{name}.{shell}"
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run([exe, *check, str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, (name, proc.stderr)


def test_static_files_parse() -> None:
    from hdenv.resources import data_dir

    checks = [("tcsh", ["-n", "-f"], data_dir("shell") / "hdenv.csh"),
              ("fish", ["--no-execute"], data_dir("completions") / "hdenv.fish"),
              ("zsh", ["-n"], data_dir("completions") / "_hdenv"),
              ("shellcheck", ["-s", "bash"], data_dir("completions") / "hdenv.bash")]
    for tool, flags, path in checks:
        proc = subprocess.run([need(tool), *flags, str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, (path, proc.stdout, proc.stderr)


def test_templates_use_strict_undefined() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        shellcmd.render(get_shell("bash"), "bash.sh.j2", {})
