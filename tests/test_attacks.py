"""The adversarial pass of issue 10, one test per numbered attack, through the real program.

Each test reproduces the attack as it was reported and shows it is now
refused, detected or harmless. Attacks that need a second user sharing a
store create one with useradd (root only; CI runs as root).
"""

from __future__ import annotations

from pathlib import Path

from conftest import Runner

# -- 2: Jinja templates run sandboxed ------------------------------------------


def test_2_stack_file_templates_cannot_reach_python(run_hdenv: Runner, tmp_path: Path,
                                                    store_dir: Path) -> None:
    stack = tmp_path / "evil.toml"
    stack.write_text(
        '[packages.a]\nversion = "1"\n'
        """when = "cycler.__init__.__globals__.os.system('id > pwned') == 0"\n"""
        "script = 'true'\n")
    proc = run_hdenv("build", "--dry-run", str(stack), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {stack}:3: unsafe condition in packages.a.when")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "pwned").exists()
    stack.write_text('[packages.a]\nversion = "1"\n'
                     "env = { X = \"{{ ''.__class__.__mro__ }}\" }\n")
    proc = run_hdenv("build", "--dry-run", str(stack), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:3: unsafe template in packages.a.env.X:"
                           " access to attribute '__class__' of 'str' object is unsafe.\n")
    assert not store_dir.exists()


def test_2_templates_cannot_exhaust_memory(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "big.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = "{{ \'x\' * 10 ** 12 }}"\n')
    proc = run_hdenv("build", "--dry-run", str(stack), timeout=60)
    assert proc.returncode == 2 and "unsafe template" in proc.stderr, proc.stderr


# -- 8: every input problem is found before the store is touched ----------------


def test_8_matrix_value_that_is_a_path_is_refused_first(run_hdenv: Runner, tmp_path: Path,
                                                        store_dir: Path) -> None:
    stack = tmp_path / "m.toml"
    stack.write_text('[matrix]\nv = ["ok", "../../x"]\n\n'
                     '[packages.a]\nversion = "1"\nscript = "mkdir -p $PREFIX"\n')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:2: matrix value '../../x' of v makes the"
                           " profile name 'm-../../x': use letters, digits, '.', '_', '+', '-',"
                           " not starting with '.' or '-'\n")
    assert not store_dir.exists()


def test_8_profile_env_key_must_be_a_variable_in_every_shell(run_hdenv: Runner, tmp_path: Path,
                                                            store_dir: Path) -> None:
    for key, why in (('"A;touch x;B"', "not a variable name"), ("PATH", "set by `hdenv load`"),
                     ("status", "special in fish"), ("HDENV_RECORD", "hdenv's own record")):
        stack = tmp_path / "e.toml"
        stack.write_text('[packages.a]\nversion = "1"\nscript = "mkdir -p $PREFIX"\n\n'
                         f'[profiles.p]\npackages = ["a"]\nenv = {{ {key} = "v" }}\n')
        proc = run_hdenv("build", str(stack))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"hdenv: error: {stack}:7: profiles.p.env: cannot set")
        assert why in proc.stderr
    assert not store_dir.exists()


def test_8_planning_errors_leave_the_store_untouched(run_hdenv: Runner, tmp_path: Path,
                                                     store_dir: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x\n")
    stack = tmp_path / "p.toml"
    body = ('[host.cc]\nprograms = ["sh"]\n\n'
            '[packages.a]\nversion = "1"\nsources = [{ path = "src" }]\nscript = "true"\n\n'
            '[packages.b]\nversion = "1"\nsources = [{ path = "missing" }]\nscript = "true"\n')
    stack.write_text(body)
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"hdenv: error: {stack}:11: packages.b: source path")
    assert not store_dir.exists()
    stack.write_text(body.replace('"missing"', '"src"').replace('["sh"]',
                                                               '["sh", "no-such-program-x"]'))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:1: host.cc: host program "
                           "'no-such-program-x' not found on PATH\n")
    assert not store_dir.exists()
    (tmp_path / "src" / "out").symlink_to("/etc/passwd")
    stack.write_text(body.replace('"missing"', '"src"'))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2 and "leaves the tree" in proc.stderr
    assert not store_dir.exists()


def test_8_deeply_nested_toml_is_an_input_error(run_hdenv: Runner, tmp_path: Path,
                                                store_dir: Path) -> None:
    stack = tmp_path / "deep.toml"
    stack.write_text("# nested\na = " + "[" * 5000 + "]" * 5000 + "\n")
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:2: invalid TOML: arrays or tables nested"
                           " too deeply\n")
    assert not store_dir.exists()


# -- 10: ordinary conditions are one-line errors ---------------------------------


def test_10_bad_hdenv_jobs_breaks_builds_only(run_hdenv: Runner, tmp_path: Path) -> None:
    env = {"HDENV_JOBS": "many"}
    for args in (("list",), ("list", "profiles"), ("verify",)):
        proc = run_hdenv(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
    stack = tmp_path / "s.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = "mkdir -p $PREFIX"\n')
    proc = run_hdenv("build", str(stack), env=env)
    assert proc.returncode == 2
    assert proc.stderr == "hdenv: error: jobs must be a whole number, got 'many'\n"
