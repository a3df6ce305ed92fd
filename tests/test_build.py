"""End-to-end builds through the real `hdenv` program with the real host gcc."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import servers
from conftest import EXAMPLES, Runner, require_tool


def copy_demo(tmp_path: Path) -> Path:
    dest = tmp_path / "demo"
    shutil.copytree(EXAMPLES / "demo", dest)
    return dest / "stack.toml"


def artifact_ids(run_hdenv: Runner) -> list[str]:
    out = run_hdenv("list", "artifacts", check=True).stdout
    return [line.split()[0] for line in out.splitlines()]


def test_demo_builds_runs_and_is_cached(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("gcc")
    stack = copy_demo(tmp_path)
    first = run_hdenv("build", str(stack), check=True)
    name, phash = first.stdout.split()
    assert name == "demo" and len(phash) == 32
    assert "2 built, 2 host captured, 0 already present" in first.stderr  # gcc, posix-tools
    ids = artifact_ids(run_hdenv)
    assert any(i.startswith("greet/1.0/") for i in ids)
    assert any(i.startswith("libgreet/1.0/") for i in ids)
    greet_id = next(i for i in ids if i.startswith("greet/"))
    prefix = Path(run_hdenv("path", greet_id, check=True).stdout.strip())
    # runs without LD_LIBRARY_PATH: the RPATH points into the libgreet artifact
    proc = subprocess.run([str(prefix / "bin" / "greet"), "tester"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.stdout == "Hello, tester!\n"
    readelf = shutil.which("readelf")
    if readelf:
        dyn = subprocess.run([readelf, "-d", str(prefix / "bin" / "greet")],
                             capture_output=True, text=True).stdout
        assert "libgreet/1.0/" in dyn
    # the build log is kept with the artifact; the artifact is read-only
    assert "hdenv: building" in (prefix / ".hdenv" / "build.log").read_text()
    assert not os.stat(prefix / "bin" / "greet").st_mode & 0o222
    # second build: nothing runs
    second = run_hdenv("build", str(stack), check=True)
    assert second.stdout == first.stdout
    assert "0 built, 4 already present" in second.stderr
    assert "building" not in second.stderr.replace("0 built", "")


def test_set_parameter_gives_new_id_beside_old(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("gcc")
    stack = copy_demo(tmp_path)
    run_hdenv("build", str(stack), check=True)
    before = set(artifact_ids(run_hdenv))
    dry = run_hdenv("build", str(stack), "--dry-run", "--set", "cflags=-O1", check=True)
    assert "would build libgreet/1.0/" in dry.stdout
    assert "-O2" in dry.stdout and "-O1" in dry.stdout  # says which input changed
    assert set(artifact_ids(run_hdenv)) == before  # dry run builds nothing
    run_hdenv("build", str(stack), "--set", "cflags=-O1", check=True)
    after = set(artifact_ids(run_hdenv))
    assert before < after
    new = {i.split("/")[0] for i in after - before}
    assert new == {"libgreet", "greet"}


MATRIX = """
[matrix]
compiler = ["gcc", "clang"]

[host.gcc]
programs = ["gcc"]
family = "compiler"

[host.clang]
programs = ["clang"]
family = "compiler"

[packages.tool]
version = "1"
build-deps = ["{{ compiler }}"]
script = 'mkdir -p "$PREFIX"'
"""


def test_set_of_a_matrix_key_to_an_unlisted_value_names_the_allowed_ones(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    stack = tmp_path / "m.toml"
    stack.write_text(MATRIX)
    for flags in ([], ["--dry-run"]):
        proc = run_hdenv("build", str(stack), *flags, "--set", "compiler=intel")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (f"hdenv: error: --set compiler=intel: matrix.compiler in {stack}"
                               " allows only gcc, clang\n")
    assert not store_dir.exists() or not any((store_dir / "artifacts").glob("*"))


VARIANTS = """
[matrix]
flavour = ["plain", "spicy"]

[packages.tool]
version = "1"
sources = [{{ url = "{url}", sha256 = "{sha}" }}]
env = {{ FLAVOUR = "{{{{ flavour }}}}" }}
script = '{script}'
"""


def test_variants_share_one_fetch_and_failures_name_the_variant(
        run_hdenv: Runner, tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    payload = www / "tool-1.tar"
    subprocess.run(["tar", "-cf", str(payload), "-C", str(tmp_path), "www"], check=True)
    sha = hashlib.sha256(payload.read_bytes()).hexdigest()
    log = tmp_path / "http.log"
    with servers.http_server(www, log) as base:
        stack = tmp_path / "v.toml"
        stack.write_text(VARIANTS.format(url=f"{base}tool-1.tar", sha=sha,
                                         script='echo "$FLAVOUR" >&2; exit 1'))
        proc = run_hdenv("build", "-j", "2", "--keep-going", str(stack))
    assert proc.returncode == 1, proc.stderr
    assert "2 build(s) failed: tool [plain], tool [spicy]" in proc.stderr
    gets = [line for line in log.read_text().splitlines() if "GET /tool-1.tar" in line]
    assert len(gets) == 1, log.read_text()


def test_changing_only_a_url_changes_no_id(run_hdenv: Runner, tmp_path: Path,
                                           shared_sources: Path) -> None:
    require_tool("gcc")
    text = (EXAMPLES / "gnu" / "stack.toml").read_text()
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text(text)
    b.write_text(text.replace("https://ftp.gnu.org/gnu/hello/", "https://mirror.example.org/h/"))
    out_a = run_hdenv("build", str(a), "--dry-run", env={"HDENV_MIRRORS": str(shared_sources)},
                      check=True).stdout
    out_b = run_hdenv("build", str(b), "--dry-run", env={"HDENV_MIRRORS": str(shared_sources)},
                      check=True).stdout
    assert "hello/2.10/" in out_a
    assert out_a == out_b


def test_source_urls_are_kept_beside_the_spec(run_hdenv: Runner, tmp_path: Path,
                                               store_dir: Path) -> None:
    """URLs stay out of the spec but land in specs/HASH.hints.json, newest first."""
    import hashlib
    import tarfile

    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "data.txt").write_text("content\n")
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    with tarfile.open(first / "data-1.tar.gz", "w:gz") as tf:
        tf.add(payload, arcname="data-1")
    shutil.copy(first / "data-1.tar.gz", second / "data-1.tar.gz")
    digest = hashlib.sha256((first / "data-1.tar.gz").read_bytes()).hexdigest()
    stack = tmp_path / "hints.toml"

    def build_from(where: Path) -> str:
        url = (where / "data-1.tar.gz").as_uri()
        stack.write_text(f"""
[packages.data]
version = "1"
sources = [{{ url = "{url}", sha256 = "{digest}", strip = 1 }}]
script = 'mkdir -p "$PREFIX/share" && cp data.txt "$PREFIX/share/"'
""")
        run_hdenv("build", str(stack), check=True)
        (aid,) = [i for i in artifact_ids(run_hdenv) if i.startswith("data/")]
        return aid

    aid = build_from(first)
    assert build_from(second) == aid  # a new URL, the same id: nothing rebuilt
    hash_ = aid.rsplit("/", 1)[1]
    assert "file:" not in (store_dir / "specs" / f"{hash_}.json").read_text()
    hints = json.loads((store_dir / "specs" / f"{hash_}.hints.json").read_text())
    assert hints[f"sha256:{digest}"]["urls"] == [(second / "data-1.tar.gz").as_uri(),
                                                 (first / "data-1.tar.gz").as_uri()]


def test_gnu_hello_and_lua_from_mirror(run_hdenv: Runner, tmp_path: Path,
                                       shared_sources: Path) -> None:
    require_tool("gcc")
    stack = tmp_path / "gnu.toml"
    stack.write_text((EXAMPLES / "gnu" / "stack.toml").read_text())
    env = {"HDENV_MIRRORS": str(shared_sources)}
    run_hdenv("build", str(stack), "-j", "2", env=env, check=True)
    ids = artifact_ids(run_hdenv)
    hello = next(i for i in ids if i.startswith("hello/2.10/"))
    lua = next(i for i in ids if i.startswith("lua/5.4.4/"))
    hello_bin = Path(run_hdenv("path", hello, check=True).stdout.strip()) / "bin" / "hello"
    lua_bin = Path(run_hdenv("path", lua, check=True).stdout.strip()) / "bin" / "lua"
    assert subprocess.run([str(hello_bin)], capture_output=True, text=True).stdout == \
        "Hello, world!\n"
    out = subprocess.run([str(lua_bin), "-e", "print(2^10, _VERSION)"], capture_output=True,
                         text=True).stdout
    assert out == "1024.0\tLua 5.4\n"
    second = run_hdenv("build", str(stack), env=env, check=True)
    assert "0 built, 4 already present" in second.stderr


FAILING = """
[host.gcc]
programs = ["gcc", "cc", "as", "ld"]

[packages.broken]
version = "1"
build-deps = ["gcc"]
script = '''
echo "about to fail: distinctive-marker-42"
mkdir -p "$PREFIX/bin" && echo x > "$PREFIX/bin/half"
exit 3
'''
"""


def test_failing_build_shows_log_tail_and_leaves_nothing(run_hdenv: Runner,
                                                         tmp_path: Path) -> None:
    stack = tmp_path / "fail.toml"
    stack.write_text(FAILING)
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 1
    assert "distinctive-marker-42" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [i for i in artifact_ids(run_hdenv) if i.startswith("broken/")]
    assert "failed.log" in proc.stderr  # where the whole log was kept


def test_undeclared_compiler_is_not_on_path(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "nocc.toml"
    stack.write_text("""
[packages.probe]
version = "1"
script = '''
mkdir -p "$PREFIX/share"
if command -v gcc || command -v cc; then echo found > "$PREFIX/share/cc"; else echo none > "$PREFIX/share/cc"; fi
env | sort > "$PREFIX/share/env"
'''
""")
    run_hdenv("build", str(stack), check=True)
    (aid,) = [i for i in artifact_ids(run_hdenv) if i.startswith("probe/")]
    prefix = Path(run_hdenv("path", aid, check=True).stdout.strip())
    assert (prefix / "share" / "cc").read_text() == "none\n"
    env_lines = (prefix / "share" / "env").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in env_lines}
    assert {"PREFIX", "HDENV_JOBS", "PATH"} <= names
    assert "USER" not in names and "HDENV_STORE" not in names



def test_a_build_sees_through_the_root_alias_only_the_builds_it_uses(
        run_hdenv: Runner, tmp_path: Path) -> None:
    """Two builds of `dep` (versions 1 and 2) in the store; `user` needs version 1 and
    lists what its root alias holds: the alias links whole names (rootalias.py), and
    the sandbox shows only the artifacts a build uses, so only 1/HASH is there. Its
    own name's directory is real and holds its own build alone."""
    require_tool("bwrap")  # unsandboxed, the alias's dep/ would show version 2 as well
    dep = """
[packages.dep]
version = "{v}"
script = 'mkdir -p "$PREFIX/share" && echo {v} > "$PREFIX/share/v"'
"""
    for version in ("1", "2"):
        stack = tmp_path / f"dep{version}.toml"
        stack.write_text(dep.format(v=version))
        run_hdenv("build", str(stack), check=True)
    stack = tmp_path / "user.toml"
    stack.write_text(dep.format(v="1") + """
[packages.user]
version = "1"
deps = ["dep"]
script = '''
mkdir -p "$PREFIX/share"
names=$(dirname "$(dirname "$DEP_ROOT")")
(cd "$names" && find . -mindepth 1 -maxdepth 2 | sort) > "$PREFIX/share/seen"
(cd "$(dirname "$PREFIX")" && ls -a) > "$PREFIX/share/own"
cat "$DEP_ROOT/share/v" > "$PREFIX/share/dep-v"
'''
""")
    run_hdenv("build", str(stack), check=True)
    ids = artifact_ids(run_hdenv)
    assert len([i for i in ids if i.startswith("dep/")]) == 2, ids
    (dep1,) = [i for i in ids if i.startswith("dep/1/")]
    (user,) = [i for i in ids if i.startswith("user/")]
    prefix = Path(run_hdenv("path", user, check=True).stdout.strip())
    assert (prefix / "share" / "seen").read_text() == f"./1\n./1/{dep1.split('/')[2]}\n"
    assert (prefix / "share" / "own").read_text() == f".\n..\n{user.split('/')[2]}\n"
    assert (prefix / "share" / "dep-v").read_text() == "1\n"


def test_bad_input_exit_2_one_line_store_untouched(run_hdenv: Runner, tmp_path: Path,
                                                   store_dir: Path) -> None:
    stack = tmp_path / "bad.toml"
    stack.write_text('[packages.a]\nversion = "1"\ndeps = ["b"]\n')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"hdenv: error: {stack}:3: package a: unknown dependency 'b' in deps"
    assert not store_dir.exists()
    proc = run_hdenv("show", "nosuchprofile")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_verify_detects_modified_file(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("gcc")
    stack = copy_demo(tmp_path)
    run_hdenv("build", str(stack), check=True)
    assert run_hdenv("verify").returncode == 0
    lib = next(i for i in artifact_ids(run_hdenv) if i.startswith("libgreet/"))
    header = Path(run_hdenv("path", lib, check=True).stdout.strip()) / "include" / "greet.h"
    os.chmod(header, 0o644)
    header.write_text("tampered\n")
    proc = run_hdenv("verify")
    assert proc.returncode == 1
    assert f"{lib}: modified include/greet.h" in proc.stdout
    # A deleted file is reported as missing, beside the modified one; the
    # artifact's directories are read-only, so the parent is opened up first.
    pc_dir = header.parent.parent / "lib" / "pkgconfig"
    os.chmod(pc_dir, 0o755)
    (pc_dir / "greet.pc").unlink()
    proc = run_hdenv("verify")
    assert proc.returncode == 1
    assert f"{lib}: missing lib/pkgconfig/greet.pc" in proc.stdout
    assert f"{lib}: modified include/greet.h" in proc.stdout


def test_show_json_and_list(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("gcc")
    stack = copy_demo(tmp_path)
    run_hdenv("build", str(stack), check=True)
    lib = next(i for i in artifact_ids(run_hdenv) if i.startswith("libgreet/"))
    short = lib[: len("libgreet/1.0/") + 8]
    info = json.loads(run_hdenv("show", short, "--json", check=True).stdout)
    assert info["id"] == lib
    assert info["spec"]["env"]["CFLAGS"] == "-O2"
    rows = json.loads(run_hdenv("list", "artifacts", "--json", check=True).stdout)
    assert lib in [r["id"] for r in rows]


SLOW = """
[packages.slow]
version = "1"
script = '''
echo run >> "{counter}"
mkdir -p "$PREFIX/bin"
i=0
while [ $i -lt 30 ]; do echo "line $i" > "$PREFIX/bin/file$i"; i=$((i+1)); sleep 0.05; done
'''
"""


def test_kill_9_leaves_no_artifact_and_rerun_succeeds(run_hdenv: Runner, hdenv_exe: str,
                                                      hdenv_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    stack = tmp_path / "slow.toml"
    stack.write_text(SLOW.format(counter=counter))
    for delay in (0.3, 0.9, 1.4):
        proc = subprocess.Popen([hdenv_exe, "build", str(stack)], env=hdenv_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not [i for i in artifact_ids(run_hdenv) if i.startswith("slow/")]
    run_hdenv("build", str(stack), check=True)
    (aid,) = [i for i in artifact_ids(run_hdenv) if i.startswith("slow/")]
    prefix = Path(run_hdenv("path", aid, check=True).stdout.strip())
    assert len(list((prefix / "bin").iterdir())) == 30
    assert run_hdenv("verify").returncode == 0


def test_concurrent_builds_build_each_package_once(hdenv_exe: str, hdenv_env: dict[str, str],
                                                   run_hdenv: Runner, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    stack = tmp_path / "conc.toml"
    stack.write_text(SLOW.format(counter=counter).replace("-lt 30", "-lt 10") + f"""
[packages.other]
version = "1"
deps = ["slow"]
script = 'echo other >> "{counter}"; mkdir -p "$PREFIX/share"; ls "$HDENV_DEP_SLOW/bin" > "$PREFIX/share/list"'
""")
    # the builds count themselves in a file outside their prefix: no sandbox for this one
    env = {**hdenv_env, "HDENV_SANDBOX": "none"}
    procs = [subprocess.Popen([hdenv_exe, "build", str(stack)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    assert sorted(counter.read_text().split()) == ["other", "run"]
    assert len({o[0] for o in outs}) == 1  # every run printed the same profile line


CONVENTIONS = """
[packages.hdf5]
version = "1"
script = 'mkdir -p "$PREFIX/include"'

[packages.foo]
version = "1"
script = 'mkdir -p "$PREFIX/lib/cmake/Foo" && echo "# Foo" > "$PREFIX/lib/cmake/Foo/FooConfig.cmake"'

[packages.user]
version = "1"
deps = ["hdf5", "foo"]
script = '''
mkdir -p "$PREFIX/share"
for v in HDENV_DEP_HDF5 HDF5_ROOT HDF5_DIR HDENV_DEP_FOO FOO_ROOT Foo_DIR FOO_DIR; do
  eval "echo $v=\\${$v-unset}"
done > "$PREFIX/share/vars"
'''
"""


def test_dependency_variables_never_collide_with_upstream_conventions(
        run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "conv.toml"
    stack.write_text(CONVENTIONS)
    run_hdenv("build", str(stack), check=True)
    prefix = {line.split("/")[0]: line.split()[1] for line in
              run_hdenv("list", "artifacts", check=True).stdout.splitlines()}
    assert (Path(prefix["user"]) / "share" / "vars").read_text().splitlines() == [
        f"HDENV_DEP_HDF5={prefix['hdf5']}", f"HDF5_ROOT={prefix['hdf5']}", "HDF5_DIR=unset",
        f"HDENV_DEP_FOO={prefix['foo']}", f"FOO_ROOT={prefix['foo']}",
        f"Foo_DIR={prefix['foo']}/lib/cmake/Foo", "FOO_DIR=unset"]


SITE_HOSTS = """
[host.gcc]
programs = ["gcc"]
family = "compiler"
"""
USES_GCC = """
[packages.{name}]
version = "1"
build-deps = ["gcc"]
script = 'mkdir -p "$PREFIX/bin" && printf "int main(void){{return 0;}}" | gcc -x c - -o "$PREFIX/bin/{name}"'
"""
OWN_GCC = """
[host.gcc]
programs = ["gcc", "g++"]
family = "compiler"
""" + USES_GCC


def test_config_host_declarations_are_shared_by_every_stack_that_names_them(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("gcc")
    config = tmp_path / "config.toml"
    config.write_text(SITE_HOSTS)
    env = {"HDENV_CONFIG": str(config)}
    for name in ("one", "two"):
        (tmp_path / f"{name}.toml").write_text(USES_GCC.format(name=name))
        run_hdenv("build", str(tmp_path / f"{name}.toml"), env=env, check=True)
    gccs = [a for a in artifact_ids(run_hdenv) if a.startswith("gcc/")]
    assert len(gccs) == 1  # one gcc for both stacks, not one per stack
    # a stack's own declaration wins, and a dry run does not call it a change of the other
    (tmp_path / "own.toml").write_text(OWN_GCC.format(name="own"))
    dry = run_hdenv("build", "--dry-run", str(tmp_path / "own.toml"), env=env, check=True)
    (line,) = [x for x in dry.stdout.splitlines() if x.startswith("would build gcc/")]
    assert line.endswith("(host software not captured yet)"), line
    run_hdenv("build", str(tmp_path / "own.toml"), env=env, check=True)
    assert len([a for a in artifact_ids(run_hdenv) if a.startswith("gcc/")]) == 2
    # a declaration in config is checked like one in a stack file: FILE:LINE
    config.write_text(SITE_HOSTS + 'colour = "blue"\n')
    bad = run_hdenv("build", str(tmp_path / "one.toml"), env=env)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"hdenv: error: {config}:"), bad.stderr
    assert "colour" in bad.stderr
