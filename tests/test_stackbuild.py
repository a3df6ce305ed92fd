"""`hdenv build` end to end for profiles: matrix variants, generations, conflicts."""

from __future__ import annotations

from pathlib import Path

from conftest import Runner

MATRIX = """
[stack]
name = "mx"

[parameters]
greeting = "hi"

[matrix]
build_type = ["release", "debug"]

[packages.tool]
version = "1"
env = { MODE = "{{ build_type }}", GREETING = "{{ greeting }}" }
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\necho %s %s\\n' "$GREETING" "$MODE" > "$PREFIX/bin/tool"
chmod +x "$PREFIX/bin/tool"
'''

[packages.common]
version = "1"
script = 'mkdir -p "$PREFIX/share/common" && echo same > "$PREFIX/share/common/data"'

[profiles.mx]
packages = ["tool", "common"]
env = { MX_DATA = "{{ profile }}/share/common" }
"""


def profiles_of(stdout: str) -> dict[str, str]:
    return dict(line.split() for line in stdout.splitlines())


def test_matrix_gives_one_profile_per_combination(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "mx.toml"
    stack.write_text(MATRIX)
    built = profiles_of(run_hdenv("build", str(stack), check=True).stdout)
    assert set(built) == {"mx-release", "mx-debug"}
    assert built["mx-release"] != built["mx-debug"]
    ids = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True).stdout.splitlines()]
    assert len([i for i in ids if i.startswith("tool/")]) == 2
    assert len([i for i in ids if i.startswith("common/")]) == 1  # shared by both variants
    for name, mode in (("mx-release", "release"), ("mx-debug", "debug")):
        prefix = Path(run_hdenv("path", name, check=True).stdout.strip())
        assert prefix.name == built[name]
        assert (prefix / "bin" / "tool").read_text().endswith(f"echo hi {mode}\n")
        assert (prefix / "share" / "common" / "data").read_text() == "same\n"
    listed = run_hdenv("list", "profiles", check=True).stdout.splitlines()
    assert sorted(line.split()[:2] for line in listed) == sorted([k, v] for k, v in built.items())


def test_generations_and_rollback_through_the_cli(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "mx.toml"
    stack.write_text(MATRIX)
    first = profiles_of(run_hdenv("build", str(stack), "--set", "build_type=release",
                                  check=True).stdout)
    gen1_path = run_hdenv("path", "mx-release", check=True).stdout
    again = run_hdenv("build", str(stack), "--set", "build_type=release", check=True)
    assert profiles_of(again.stdout) == first
    assert "generation" not in again.stderr  # same hash: no new generation
    second = profiles_of(run_hdenv("build", str(stack), "--set", "build_type=release",
                                   "--set", "greeting=hello", check=True).stdout)
    assert second["mx-release"] != first["mx-release"]
    gens = run_hdenv("profile", "generations", "mx-release", check=True).stdout.splitlines()
    assert [g.split()[:2] for g in gens] == [["1", first["mx-release"]],
                                             ["2", second["mx-release"]]]
    assert gens[1].endswith("current")
    diff = run_hdenv("diff", first["mx-release"], second["mx-release"], check=True).stdout
    assert "env.GREETING 'hi' -> 'hello'" in diff
    run_hdenv("profile", "rollback", "mx-release", check=True)
    assert run_hdenv("path", "mx-release", check=True).stdout == gen1_path


def test_profile_hash_does_not_depend_on_store_location(run_hdenv: Runner,
                                                        tmp_path: Path) -> None:
    stack = tmp_path / "mx.toml"
    stack.write_text(MATRIX)
    a = run_hdenv("build", str(stack), env={"HDENV_STORE": str(tmp_path / "a")}, check=True)
    b = run_hdenv("build", str(stack), env={"HDENV_STORE": str(tmp_path / "other b")},
                  check=True)
    assert a.stdout == b.stdout


CONFLICT = """
[packages.one]
version = "1"
script = 'mkdir -p "$PREFIX/bin" && echo one > "$PREFIX/bin/same"'

[packages.two]
version = "1"
script = 'mkdir -p "$PREFIX/bin" && echo two > "$PREFIX/bin/same"'

[profiles.both]
packages = ["one", "two"]
{resolution}
"""


def test_file_conflict_names_both_artifacts_and_can_be_resolved(run_hdenv: Runner,
                                                                tmp_path: Path) -> None:
    stack = tmp_path / "conflict.toml"
    stack.write_text(CONFLICT.format(resolution=""))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("hdenv: error:")]
    assert line.startswith(f"hdenv: error: {stack}:10: profile both:")
    assert "bin/same" in line and "one/1/" in line and "two/1/" in line
    assert run_hdenv("list", "profiles", check=True).stdout == ""
    stack.write_text(CONFLICT.format(resolution='priority = ["two"]'))
    run_hdenv("build", str(stack), check=True)
    prefix = Path(run_hdenv("path", "both", check=True).stdout.strip())
    assert (prefix / "bin" / "same").read_text() == "two\n"


def test_a_build_without_caches_loads_no_cache_code(hdenv_env: dict[str, str],
                                                   tmp_path: Path) -> None:
    """The caches' modules are 30-50 ms to import, all of it serial time in a `-j 2`
    build; a build with none configured asks none, and builds all the same."""
    import subprocess
    import sys

    stack = tmp_path / "stack.toml"
    stack.write_text("[packages.one]\nversion = \"1\"\nscript = 'mkdir -p \"$PREFIX/share\"'\n")
    probe = ("import atexit, sys; atexit.register(lambda: print('loaded:',"
             " 'hdenv.exchange.substitute' in sys.modules, file=sys.stderr));"
             " sys.argv = ['hdenv', 'build', sys.argv[1]];"
             " from hdenv.cli.main import main; main()")
    done = subprocess.run([sys.executable, "-c", probe, str(stack)], env=hdenv_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 built" in done.stderr and "loaded: False" in done.stderr, done.stderr
