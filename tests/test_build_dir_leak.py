"""Builds leave no trace of their temporary build directory in what they install.

Real `hdenv build` runs with the host gcc: a shared library compiled with `-g`
(debug info records the compile directory and file names) and a program
using `__FILE__`. Nothing under the artifact may mention `<store>/tmp`. Then the same artifact,
pushed to a directory cache, is pulled into a store root 150 bytes longer
and back into a shorter one, and works there (issue 27's relocation).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import Runner, require_tool

STACK = r"""
[host.gcc]
programs = ["gcc", "cc", "as", "ld"]

[packages.debuglib]
version = "1"
build-deps = ["gcc"]
env = { CFLAGS = "-g -O0" }
script = '''
mkdir -p "$PREFIX/lib" "$PREFIX/bin" src
printf 'int answer(void) { return 42; }\nconst char *where(void) { return __FILE__; }\n' > src/answer.c
printf '#include <stdio.h>\nint answer(void);\nconst char *where(void);\nint main(void) { printf("%%d %%s\\n", answer(), where()); return 0; }\n' > src/main.c
gcc $CFLAGS -shared -fPIC "$PWD/src/answer.c" -o "$PREFIX/lib/libanswer.so"
gcc $CFLAGS "$PWD/src/main.c" -L"$PREFIX/lib" -lanswer -Wl,-rpath,"$PREFIX/lib" -o "$PREFIX/bin/answer"
echo "${CFLAGS%%=*}" > "$PREFIX/cflags"
'''
"""


def test_debug_info_and_file_names_name_a_fixed_build_directory(
        run_hdenv: Runner, store_dir: Path, tmp_path: Path) -> None:
    require_tool("gcc")
    stack = tmp_path / "stack.toml"
    stack.write_text(STACK)
    run_hdenv("build", str(stack), check=True)
    out = run_hdenv("list", "artifacts", check=True).stdout
    (aid,) = [line.split()[0] for line in out.splitlines() if line.startswith("debuglib/")]
    prefix = Path(run_hdenv("path", aid, check=True).stdout.strip())
    # the package's own flags are kept, the map appended
    assert (prefix / "cflags").read_text() == "-g -O0 -ffile-prefix-map\n"
    run = subprocess.run([str(prefix / "bin" / "answer")], capture_output=True, text=True,
                         check=True)
    assert run.stdout == "42 /build/src/src/answer.c\n"  # the script runs in src/
    lib = (prefix / "lib" / "libanswer.so").read_bytes()
    assert b".debug_info" in lib and b"/build/src" in lib  # debug info is there, mapped
    tmp = str(store_dir.resolve() / "tmp").encode()
    leaks = [p for p in prefix.rglob("*") if p.is_file() and tmp in p.read_bytes()]
    assert leaks == []
    # the map is not recorded as a compiler option either
    assert b"-ffile-prefix-map" not in lib


def grep_store(store: Path, needle: bytes) -> list[str]:
    """Every file and link target under `store` that holds `needle` (what grep -r would say)."""
    hits = []
    for dirpath, dirnames, files in os.walk(store):
        for name in files + dirnames:
            p = Path(dirpath) / name
            if p.is_symlink():
                if needle in os.readlink(p).encode():
                    hits.append(str(p))
            elif p.is_file() and needle in p.read_bytes():
                hits.append(str(p))
    return hits


def test_a_g_build_moves_to_a_root_150_bytes_longer_and_back(
        run_hdenv: Runner, store_dir: Path, tmp_path: Path) -> None:
    require_tool("gcc")
    stack = tmp_path / "stack.toml"
    stack.write_text(STACK + '\n[profiles.dbg]\npackages = ["debuglib"]\n')
    run_hdenv("build", str(stack), check=True)
    key = run_hdenv("cache", "keygen", "k1", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
                    check=True).stdout.strip()
    secret = tmp_path / "xdg" / "hdenv" / "keys" / "k1.secret"
    cache = tmp_path / "cache"
    run_hdenv("push", "dbg", "--to", str(cache), "--key", str(secret), check=True)
    old_root = str(store_dir.resolve()).encode()
    longer = tmp_path / ("b" + "x" * (len(store_dir.name) + 150 - 1))
    assert len(str(longer)) == len(str(store_dir)) + 150
    env = {"HDENV_STORE": str(longer), "HDENV_CACHES": str(cache), "HDENV_TRUSTED_KEYS": key}
    pulled = run_hdenv("build", str(stack), env=env, check=True)
    assert "\n0 built, " in pulled.stderr, pulled.stderr  # from the cache, not from source
    shutil.rmtree(store_dir)  # nothing may still use the old store
    out = run_hdenv("list", "artifacts", env=env, check=True).stdout
    (aid,) = [line.split()[0] for line in out.splitlines() if line.startswith("debuglib/")]
    prefix = Path(run_hdenv("path", aid, env=env, check=True).stdout.strip())
    assert str(prefix).startswith(str(longer))
    run = subprocess.run([str(prefix / "bin" / "answer")], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == "42 /build/src/src/answer.c\n"
    assert b".debug_info" in (prefix / "lib" / "libanswer.so").read_bytes()
    # no byte of the old root is left, the provenance record included
    meta = prefix / ".hdenv" / "artifact.json"
    assert grep_store(longer, old_root) == []
    assert json.loads(meta.read_text())["installed_from"]["source"] == str(cache)
    assert run_hdenv("verify", env=env).returncode == 0
    # and back into a shorter root, from a cache the longer store pushed
    cache2 = tmp_path / "cache2"
    run_hdenv("push", "dbg", "--to", str(cache2), "--key", str(secret), env=env, check=True)
    short = tmp_path / "c"
    env2 = {"HDENV_STORE": str(short), "HDENV_CACHES": str(cache2), "HDENV_TRUSTED_KEYS": key}
    assert "\n0 built, " in run_hdenv("build", str(stack), env=env2, check=True).stderr
    shutil.rmtree(longer)
    prefix2 = Path(run_hdenv("path", aid, env=env2, check=True).stdout.strip())
    run2 = subprocess.run([str(prefix2 / "bin" / "answer")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert run2.stdout == "42 /build/src/src/answer.c\n", run2.stderr
    assert grep_store(short, str(longer).encode()) == []


PADDED_STACK = r"""
[host.gcc]
programs = ["gcc", "cc", "as", "ld"]

[packages.greeting]
version = "1"
build-deps = ["gcc"]
env = { CFLAGS = "-g -O0" }
script = '''
mkdir -p "$PREFIX/lib" "$PREFIX/include" "$PREFIX/share"
printf 'const char *greeting(void);\n' > "$PREFIX/include/greeting.h"
printf '#include <greeting.h>\nconst char *greeting(void) { return "hello"; }\n' > g.c
gcc $CFLAGS -I"$PREFIX/include" -shared -fPIC g.c -o "$PREFIX/lib/libgreeting.so"
'''

[packages.datauser]
version = "1"
deps = ["greeting"]
build-deps = ["gcc"]
env = { CFLAGS = "-g -O0" }
script = '''
mkdir -p "$PREFIX/bin" "$PREFIX/share"
echo "from the data directory" > "$PREFIX/share/message"
cat > main.c <<'C'
#include <stdio.h>
#include <greeting.h>
int main(void) {
    char line[64] = "";
    FILE *f = fopen(DATADIR "/message", "r");
    if (!f || !fgets(line, sizeof line, f)) { perror(DATADIR); return 1; }
    printf("%s, %s", greeting(), line);
    return 0;
}
C
gcc $CFLAGS -DDATADIR="\"$PREFIX/share\"" main.c -o "$PREFIX/bin/datauser" -lgreeting
'''

[profiles.data]
packages = ["datauser"]
"""


def short_root() -> Path:
    """A directory whose path length does not depend on where pytest keeps its temp files."""
    return Path(tempfile.mkdtemp(prefix="hdr", dir="/tmp"))


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_a_compiled_in_prefix_moves_to_a_root_150_bytes_longer(
        run_hdenv: Runner, tmp_path: Path, sandbox: str) -> None:
    require_tool("gcc")
    base = short_root()
    try:
        short, longer = base / "s", base / ("l" * 151)
        assert len(str(longer)) == len(str(short)) + 150
        stack = tmp_path / "stack.toml"
        stack.write_text(PADDED_STACK)
        env = {"HDENV_STORE": str(short), "HDENV_SANDBOX": sandbox}
        run_hdenv("build", str(stack), env=env, check=True)
        key = run_hdenv("cache", "keygen", "k1", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
                        check=True).stdout.strip()
        secret = tmp_path / "xdg" / "hdenv" / "keys" / "k1.secret"
        cache = tmp_path / "cache"
        run_hdenv("push", "data", "--to", str(cache), "--key", str(secret), env=env, check=True)
        env2 = {"HDENV_STORE": str(longer), "HDENV_CACHES": str(cache),
                "HDENV_TRUSTED_KEYS": key, "HDENV_SANDBOX": sandbox}
        pulled = run_hdenv("build", str(stack), env=env2, check=True)
        assert "\n0 built, " in pulled.stderr, pulled.stderr  # relocated, not rebuilt
        shutil.rmtree(short)  # nothing may still use the old store
        out = run_hdenv("list", "artifacts", env=env2, check=True).stdout
        (aid,) = [line.split()[0] for line in out.splitlines() if line.startswith("datauser/")]
        prefix = Path(run_hdenv("path", aid, env=env2, check=True).stdout.strip())
        binary = prefix / "bin" / "datauser"
        run = subprocess.run([str(binary)], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})
        assert run.returncode == 0, run.stderr
        assert run.stdout == "hello, from the data directory\n"
        # the compiled-in prefix is the new root, padded with slashes to the room it had
        data = binary.read_bytes()
        assert re.search(rb"/{20,}" + re.escape(str(prefix).encode()) + rb"/share\0", data)
        assert b".debug_info" in data
        assert grep_store(longer, str(short).encode()) == []  # no byte of the old root
        assert run_hdenv("verify", env=env2).returncode == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)
