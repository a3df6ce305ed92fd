"""Packages by name through the hierarchy, in real shells with real builds.

One stack builds `greet` (a library) and `hello` (a program linked with it)
with the host gcc and clang as a matrix (profiles tc-gcc and tc-clang); a
second stack builds `gonly` with gcc alone, and a profile named `greet` to show
that a profile wins over a package of the same name. Each shell then does what
an Lmod user does: `load hello` with nothing loaded (ambiguous: the choices are
named by compiler), `load gcc`, `load hello` (the gcc build runs), `swap gcc
clang` (the clang build runs, gonly goes inactive), the swap back (gonly
returns), and unload of everything (the environment is exactly as before).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from shellfixtures import add_artifact, add_profile

from hdenv.errors import UserError
from hdenv.shell import byname, fastload
from hdenv.shell.envdiff import LoadRecord

slow = pytest.mark.slow  # the tests with real builds (the rest read a store written by hand)

VENV_BIN = str(Path(sys.executable).parent)
HDENV = str(Path(VENV_BIN) / "hdenv")
SHELLS = ["bash", "zsh", "fish", "tcsh"]
VOLATILE = {"_", "SHLVL", "PWD", "OLDPWD", "COLUMNS", "LINES", "fish_pid"}
DUMP = "import json,os,sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
STORE_DIR = "by-name'q"  # quoted in every shell (no space: $CFLAGS is word-split in builds)

HOSTS = """
[host.gcc]
programs = ["gcc", "cc", "as", "ld", "ar"]
family = "compiler"
"""

STACK = """
[stack]
name = "tc"

[parameters]
cflags = "-O2"

[matrix]
compiler = ["gcc", "clang"]
""" + HOSTS + """
[host.clang]
programs = ["clang", "as", "ld", "ar"]
family = "compiler"

[packages.greet]
version = "1.0"
build-deps = ["{{ compiler }}"]
env = { CC = "{{ compiler }}", CFLAGS = "{{ cflags }}" }
script = '''
mkdir -p "$PREFIX/lib" "$PREFIX/include"
cat > greet.c <<'C'
const char *greet(void) {
#ifdef __clang__
  return "greet built by clang";
#else
  return "greet built by gcc";
#endif
}
C
printf 'const char *greet(void);\\n' > "$PREFIX/include/greet.h"
$CC $CFLAGS -shared -fPIC greet.c -o "$PREFIX/lib/libgreet.so"
'''

[packages.hello]
version = "2.10"
deps = ["greet"]
build-deps = ["{{ compiler }}"]
env = { CC = "{{ compiler }}", CFLAGS = "{{ cflags }}" }
script = '''
mkdir -p "$PREFIX/bin"
printf '#include <stdio.h>\\n#include <greet.h>\\nint main(void){puts(greet());return 0;}\\n' > hello.c
$CC $CFLAGS hello.c -o "$PREFIX/bin/hello" -lgreet
'''

[profiles.tc]
packages = ["hello"]

[profiles.cc]
packages = ["{{ compiler }}"]
family = "compiler"
"""

EXTRA = """
[stack]
name = "extra"
""" + HOSTS + """
[packages.gonly]
version = "0.1"
build-deps = ["gcc"]
env = { CC = "gcc" }
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\necho gonly here\\n' > "$PREFIX/bin/gonly"
chmod +x "$PREFIX/bin/gonly"
'''

[profiles.extra]
packages = ["gonly"]

[profiles.greet]
packages = ["gonly"]
"""


class Built:
    """The store, and the ids of what the stacks built."""

    def __init__(self, root: Path):
        self.root = root
        self.store = root / STORE_DIR
        self.config = root / "none.toml"
        self.config.write_text("")

    def env(self) -> dict[str, str]:
        return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8", "TERM": "dumb", "HDENV_STORE": str(self.store),
                "HDENV_CONFIG": str(self.config)}

    def hdenv(self, *args: str) -> str:
        proc = subprocess.run([HDENV, *args], env=self.env(), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"hdenv {args}:\n{proc.stderr}"
        return proc.stdout

    def ids(self, name: str) -> list[str]:
        return sorted(f"{name}/{v}/{h}" for v in os.listdir(self.store / "artifacts" / name)
                      for h in os.listdir(self.store / "artifacts" / name / v))

    def built_with(self, name: str, compiler: str) -> str:
        for aid in self.ids(name):
            spec = json.loads((self.store / "artifacts" / aid / ".hdenv" / "spec.json")
                              .read_text())
            if spec["env"]["CC"] == compiler:
                return aid
        raise AssertionError(f"no {name} built with {compiler}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    for tool in ("gcc", "clang"):
        require_tool(tool)
    b = Built(tmp_path_factory.mktemp("byname"))
    (b.root / "stack.toml").write_text(STACK)
    (b.root / "extra.toml").write_text(EXTRA)
    b.hdenv("build", str(b.root / "stack.toml"))
    b.hdenv("build", str(b.root / "extra.toml"))
    return b


class Syntax:
    def __init__(self, name: str):
        self.name = name

    def q(self, value: str) -> str:
        from hdenv.shell.quoting import get_shell

        return get_shell(self.name).quote(value)

    def init(self) -> str:
        return {"bash": 'eval "$(hdenv init bash)"', "zsh": 'eval "$(hdenv init zsh)"',
                "fish": "hdenv init fish | source", "tcsh": 'eval "`hdenv init tcsh`"'}[self.name]

    def status(self, label: str) -> str:
        var = "$status" if self.name in ("fish", "tcsh") else "$?"
        return f"echo {label}={var}"

    def dump(self, path: Path) -> str:
        return f"{self.q(sys.executable)} -c {self.q(DUMP)} {self.q(str(path))}"

    def command(self, script: Path) -> list[str]:
        flags = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": ["--no-config"],
                 "tcsh": ["-f"]}[self.name]
        return [require_tool(self.name), *flags, str(script)]


def run(built: Built, shell: str, lines: list[str], tmp_path: Path
        ) -> subprocess.CompletedProcess[str]:
    syn = Syntax(shell)
    script = tmp_path / f"drive.{shell}"
    script.write_text("\n".join([syn.init(), *lines]) + "\n", encoding="utf-8")
    return subprocess.run(syn.command(script), env=built.env(), capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)


def dump(path: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in VOLATILE}


def which(env: dict[str, str], program: str) -> str | None:
    """The file `program` runs from in the dumped environment, links resolved."""
    found = shutil.which(program, path=env.get("PATH", ""))
    return os.path.realpath(found) if found else None


@slow
@pytest.mark.parametrize("shell", SHELLS)
def test_compiler_picks_the_build_swap_follows_and_unload_restores(
        built: Built, shell: str, tmp_path: Path) -> None:
    syn = Syntax(shell)
    steps = ("before", "gcc", "clang", "back", "after")
    d = {s: tmp_path / f"{s}.json" for s in steps}
    lines = [
        syn.dump(d["before"]),
        "hdenv load hello", syn.status("ambiguous"),
        "hdenv load gcc", syn.status("gcc"),
        "hdenv load hello gonly", syn.status("hello"),
        "echo RUN1", "hello", "gonly",
        syn.dump(d["gcc"]),
        "hdenv swap gcc clang", syn.status("swap"),
        "echo RUN2", "hello",
        "hdenv loaded",
        syn.dump(d["clang"]),
        "hdenv swap clang gcc", syn.status("back"),
        "echo RUN3", "hello", "gonly",
        syn.dump(d["back"]),
        "hdenv unload hello gonly gcc", syn.status("unload"),
        syn.dump(d["after"]),
    ]
    proc = run(built, shell, lines, tmp_path)
    out, err = proc.stdout, proc.stderr
    for step in ("gcc", "hello", "swap", "back", "unload"):
        assert f"{step}=0" in out, (out, err)

    # nothing loaded, two builds: one line, exit 2, the choices named by compiler
    assert "ambiguous=2" in out, (out, err)
    line = next(x for x in err.splitlines() if "ambiguous" in x)
    assert "hello/2.10-gcc (gcc/" in line and "hello/2.10-clang (clang/" in line, line

    gcc_hello, clang_hello = built.built_with("hello", "gcc"), built.built_with("hello", "clang")
    run1 = out.split("RUN1", 1)[1]
    assert "greet built by gcc" in run1.split("RUN2")[0] and "gonly here" in run1, out
    before, with_gcc = dump(d["before"]), dump(d["gcc"])
    hello_path = which(with_gcc, "hello")
    assert hello_path is not None and f"/artifacts/{gcc_hello}/" in hello_path

    # swap: hello is now the clang build; gonly (gcc only) is inactive and shown so
    assert "greet built by clang" in out.split("RUN2", 1)[1].split("RUN3")[0], out
    with_clang = dump(d["clang"])
    hello_path = which(with_clang, "hello")
    assert hello_path is not None and f"/artifacts/{clang_hello}/" in hello_path
    assert which(with_clang, "gonly") is None
    assert with_clang["HDENV_INACTIVE"].startswith("gonly/0.1/")
    listing = out.split("RUN2", 1)[1].split("RUN3")[0]
    assert "Inactive" in listing and "gonly/0.1" in listing.split("Inactive", 1)[1], listing
    assert "clang/" in listing.split("Inactive", 1)[0], listing

    # the swap back brings the gcc build and gonly back
    run3 = out.split("RUN3", 1)[1]
    assert "greet built by gcc" in run3 and "gonly here" in run3, out
    back = dump(d["back"])
    assert "HDENV_INACTIVE" not in back
    assert which(back, "gonly") is not None

    assert dump(d["after"]) == before


@slow
def test_profile_takes_precedence_and_ids_and_variant_names_load(
        built: Built, tmp_path: Path) -> None:
    gonly = built.ids("gonly")[0]
    clang_hello = built.built_with("hello", "clang")
    steps = ("profile", "byid", "variant")
    d = {s: tmp_path / f"{s}.json" for s in steps}
    syn = Syntax("bash")
    lines = [
        "hdenv load greet", syn.status("profile"), syn.dump(d["profile"]), "hdenv purge",
        f"hdenv load {syn.q(gonly)}", syn.status("byid"), syn.dump(d["byid"]),
        f"hdenv unload {syn.q(gonly)}", syn.status("unloadid"), "hdenv loaded -t",
        "hdenv load hello/2.10-clang", syn.status("variant"), syn.dump(d["variant"]),
    ]
    proc = run(built, "bash", lines, tmp_path)
    for step in (*steps, "unloadid"):
        assert f"{step}=0" in proc.stdout, (proc.stdout, proc.stderr)
    assert "unloadid=0\nvariant=0" in proc.stdout  # unloaded by its id: nothing left
    # `greet` is a profile (holding gonly) and a package: the profile wins
    assert dump(d["profile"])["HDENV_LOADED"].startswith("greet/1:")
    assert which(dump(d["profile"]), "gonly") is not None
    # a full id: that artifact, with its closure, as a profile kept in the store
    byid = dump(d["byid"])
    assert byid["HDENV_LOADED"].startswith("gonly/0.1:")
    prefix = byid["CMAKE_PREFIX_PATH"]
    assert prefix.startswith(str(built.store / "profiles")) and os.path.isdir(prefix)
    # the name avail shows for a build loads exactly that build, with its dependency
    variant = dump(d["variant"])
    hello_path = which(variant, "hello")
    assert hello_path is not None and f"/artifacts/{clang_hello}/" in hello_path
    ran = subprocess.run(["hello"], env=variant, capture_output=True, text=True)
    assert ran.stdout.strip() == "greet built by clang"


@slow
def test_unloading_the_compiler_sets_its_packages_aside(built: Built, tmp_path: Path) -> None:
    """As Lmod: `unload gcc` makes hello inactive; `load gcc` brings it back; unloading
    an inactive package forgets it, and the environment ends as it began."""
    syn = Syntax("bash")
    d = {s: tmp_path / f"{s}.json" for s in ("before", "aside", "back", "after")}
    lines = [syn.dump(d["before"]), "hdenv load gcc hello",
             "hdenv unload gcc", syn.status("unload"), syn.dump(d["aside"]),
             "hdenv load gcc", syn.status("load"), syn.dump(d["back"]),
             "hdenv unload gcc hello", syn.status("both"), syn.dump(d["after"])]
    proc = run(built, "bash", lines, tmp_path)
    for step in ("unload", "load", "both"):
        assert f"{step}=0" in proc.stdout, (proc.stdout, proc.stderr)
    aside, back = dump(d["aside"]), dump(d["back"])
    assert which(aside, "hello") is None and "HDENV_RECORD" not in aside
    assert aside["HDENV_INACTIVE"] == built.built_with("hello", "gcc")
    hello_path = which(back, "hello")
    assert hello_path is not None and built.built_with("hello", "gcc") in hello_path
    assert "HDENV_INACTIVE" not in back
    assert dump(d["after"]) == dump(d["before"])


@slow
def test_a_loaded_compiler_profile_picks_the_build_and_its_swap_retargets(
        built: Built, tmp_path: Path) -> None:
    """A profile of family `compiler` (cc-gcc holds the host gcc) counts as the loaded
    compiler: `load hello` takes the gcc build, and swapping it for cc-clang follows."""
    syn = Syntax("bash")
    d = {s: tmp_path / f"{s}.json" for s in ("gcc", "clang")}
    lines = ["hdenv load cc-gcc hello", syn.status("gcc"), syn.dump(d["gcc"]),
             "hdenv swap cc-gcc cc-clang", syn.status("swap"), syn.dump(d["clang"])]
    proc = run(built, "bash", lines, tmp_path)
    for step in ("gcc", "swap"):
        assert f"{step}=0" in proc.stdout, (proc.stdout, proc.stderr)
    with_gcc, with_clang = which(dump(d["gcc"]), "hello"), which(dump(d["clang"]), "hello")
    assert with_gcc is not None and built.built_with("hello", "gcc") in with_gcc
    assert with_clang is not None and built.built_with("hello", "clang") in with_clang


@slow
def test_show_takes_packages_by_name_as_load_does(built: Built) -> None:
    gcc_build = built.built_with("hello", "gcc")
    assert built.hdenv("show", "hello/2.10-gcc").startswith(f"{gcc_build}\n")  # no description
    assert f'"id": "{gcc_build}"' in built.hdenv("show", "--json", "hello/2.10-gcc")
    ambiguous = subprocess.run([HDENV, "show", "hello"], env=built.env(), capture_output=True,
                               text=True)
    assert ambiguous.returncode == 2 and "hello is ambiguous" in ambiguous.stderr
    assert "hello/2.10-gcc" in ambiguous.stderr and "hello/2.10-clang" in ambiguous.stderr


@slow
def test_avail_names_builds_as_load_does(built: Built) -> None:
    text = built.hdenv("avail")
    assert "packages: greet/1.0-clang hello/2.10-clang" in text, text
    assert "packages: greet/1.0-gcc hello/2.10-gcc" in text, text


@pytest.fixture(scope="module")
def two_cflags(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """tc-gcc (-O2) and a second stack, o1-gcc, of the same packages with -O1: both
    current, both gcc, told apart only by a parameter."""
    for tool in ("gcc", "clang"):
        require_tool(tool)
    b = Built(tmp_path_factory.mktemp("cflags"))
    (b.root / "stack.toml").write_text(STACK)
    (b.root / "o1.toml").write_text(STACK.replace("[profiles.tc]", "[profiles.o1]"))
    b.hdenv("build", str(b.root / "stack.toml"))
    b.hdenv("build", str(b.root / "o1.toml"), "--set", "compiler=gcc", "--set", "cflags=-O1")
    return b


@slow
def test_ambiguity_names_the_parameter_that_differs(two_cflags: Built, tmp_path: Path) -> None:
    syn = Syntax("bash")
    d = tmp_path / "o1.json"
    lmod = tmp_path / "lmod.json"
    lines = ["hdenv load gcc", "hdenv load hello", syn.status("ambiguous"),
             "hdenv load hello/2.10-gcc-O1", syn.status("named"), syn.dump(d),
             "hdenv unload hello", "hdenv load hello/2.10-O1", syn.status("lmod"),
             syn.dump(lmod)]
    proc = run(two_cflags, "bash", lines, tmp_path)
    assert "ambiguous=2" in proc.stdout and "named=0" in proc.stdout, (proc.stdout, proc.stderr)
    assert "lmod=0" in proc.stdout, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("hdenv: error:")]
    assert len(errors) == 1, proc.stderr
    assert "hello/2.10-gcc-O1 (gcc/12" in errors[0] and "CFLAGS=-O1" in errors[0], errors
    assert "hello/2.10-gcc-O2 (gcc/12" in errors[0] and "CFLAGS=-O2" in errors[0], errors
    assert "clang" not in errors[0].split("ambiguous", 1)[1].split(";")[0]  # gcc is loaded
    o1 = next(a for a in two_cflags.ids("hello")
              if "-O1" in (two_cflags.store / "artifacts" / a / ".hdenv" / "spec.json")
              .read_text())
    hello_path = which(dump(d), "hello")
    assert hello_path is not None and f"/artifacts/{o1}/" in hello_path
    # the name the Lmod tree gives it under Compiler/gcc loads it too, with gcc loaded
    two_cflags.hdenv("modulefiles", "--out", str(tmp_path / "lua"))
    tree = sorted(str(p.relative_to(tmp_path / "lua"))
                  for p in (tmp_path / "lua").glob("Compiler/gcc/*/hello/[!.]*.lua"))
    assert tree == ["Compiler/gcc/12.2.0/hello/2.10-O1.lua",
                    "Compiler/gcc/12.2.0/hello/2.10-O2.lua"], tree
    hello_path = which(dump(lmod), "hello")
    assert hello_path is not None and f"/artifacts/{o1}/" in hello_path


# -- the choice and the swap, from a store written by the layout contract ----------

GCC = "gcc/12.2.0/" + "g" * 32
CLANG = "clang/14.0.6/" + "c" * 32
OMPI = "openmpi/4.1.4/" + "o" * 32
MPICH = "mpich/4.0/" + "m" * 32


def _build(root: Path, name: str, tools: list[str], **env: str) -> str:
    """An artifact built with `tools` (its spec says so), id from what went in."""
    from shellfixtures import fake_hash

    aid = f"{name}/1.0/" + fake_hash(f"{name}{tools}{env}")
    add_artifact(root, aid)
    (root / "artifacts" / aid / ".hdenv" / "spec.json").write_text(json.dumps(
        {"kind": "build", "name": name, "version": "1.0", "deps": [], "build_deps": tools,
         "env": env}))
    return aid


@pytest.fixture
def mpi_store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "store"
    for aid, family in ((GCC, "compiler"), (CLANG, "compiler"), (OMPI, "mpi"), (MPICH, "mpi")):
        add_artifact(root, aid)
        (root / "artifacts" / aid / ".hdenv" / "spec.json").write_text(
            json.dumps({"kind": "host", "family": family}))
    ids = {"gcc-ompi": _build(root, "app", [GCC, OMPI], CC="gcc"),
           "gcc-mpich": _build(root, "app", [GCC, MPICH], CC="gcc"),
           "clang-ompi": _build(root, "app", [CLANG, OMPI], CC="clang"),
           "gcc-only": _build(root, "tool", [GCC], CC="gcc")}
    add_profile(root, "s-gcc", [ids["gcc-ompi"], ids["gcc-only"]])
    add_profile(root, "s-gcc-mpich", [ids["gcc-mpich"]])
    add_profile(root, "s-clang", [ids["clang-ompi"]])
    return root, ids


def loaded(*pairs: tuple[str, str | None]) -> list[LoadRecord]:
    return [LoadRecord(hash=f"h{i}", name=aid.split("/")[0], family=fam, package=aid)
            for i, (aid, fam) in enumerate(pairs)]


def test_the_loaded_compiler_and_mpi_pick_the_build(mpi_store: tuple[Path, dict[str, str]]
                                                    ) -> None:
    root, ids = mpi_store
    recs = loaded((GCC, "compiler"), (OMPI, "mpi"))
    assert fastload.resolve(str(root), "app", recs).package == ids["gcc-ompi"]
    recs = loaded((CLANG, "compiler"), (OMPI, "mpi"))
    assert fastload.resolve(str(root), "app", recs).package == ids["clang-ompi"]
    recs = loaded((GCC, "compiler"), (MPICH, "mpi"))
    assert fastload.resolve(str(root), "app", recs).package == ids["gcc-mpich"]
    # gcc alone: two MPIs tell the builds apart, and the message says so
    with pytest.raises(UserError) as info:
        fastload.resolve(str(root), "app", loaded((GCC, "compiler")))
    msg = info.value.message
    assert msg.startswith("app is ambiguous: ") and "\n" not in msg
    assert "(gcc/12.2.0, mpich/4.0)" in msg and "(gcc/12.2.0, openmpi/4.1.4)" in msg, msg
    assert "clang" not in msg.split(";")[0], msg
    # clang + mpich: no such build, said in one line with the builds there are
    with pytest.raises(UserError, match=r"^app has no build with the loaded clang/14.0.6,"
                                        r" mpich/4.0: "):
        fastload.resolve(str(root), "app", loaded((CLANG, "compiler"), (MPICH, "mpi")))


def test_is_avail_knows_packages_by_name(mpi_store: tuple[Path, dict[str, str]]) -> None:
    root, ids = mpi_store
    roots = [str(root)]
    assert byname.available(roots, "app") and byname.available(roots, "app/1.0")
    assert byname.available(roots, "clang") and byname.available(roots, ids["gcc-only"])
    assert not byname.available(roots, "nosuch") and not byname.available(roots, "app/9")
    env = {**os.environ, "HDENV_STORE": str(root), "HDENV_CONFIG": os.devnull}
    for ref, code in (("app", 0), ("tool/1.0", 0), ("nosuch", 1)):
        assert subprocess.run([HDENV, "is-avail", ref], env=env).returncode == code, ref


def test_a_compiler_in_no_profile_loads_by_name(mpi_store: tuple[Path, dict[str, str]]) -> None:
    root, _ids = mpi_store
    prof = fastload.resolve(str(root), "clang")
    assert prof.package == CLANG and prof.family == "compiler"
    assert os.path.isdir(prof.prefix) and prof.artifacts == [CLANG]


def test_retarget_finds_counterparts_and_sets_aside_the_rest(
        mpi_store: tuple[Path, dict[str, str]]) -> None:
    root, ids = mpi_store
    roots = [str(root)]
    recs = loaded((CLANG, "compiler"), (OMPI, "mpi"), (ids["gcc-ompi"], None),
                  (ids["gcc-only"], None))
    plan = byname.retarget(roots, recs, [])
    assert plan.unload == ["h2", "h3"]
    assert [p.package for p in plan.load] == [ids["clang-ompi"]]
    assert plan.inactive == [ids["gcc-only"]]
    # back to gcc: the inactive one returns as itself
    plan = byname.retarget(roots, loaded((GCC, "compiler"), (OMPI, "mpi"),
                                         (ids["clang-ompi"], None)), [ids["gcc-only"]])
    assert [p.package for p in plan.load] == [ids["gcc-ompi"], ids["gcc-only"]]
    assert plan.inactive == []
