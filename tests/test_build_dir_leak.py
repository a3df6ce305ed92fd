"""Builds leave no trace of their temporary build directory in what they install.

Real `hdenv build` runs with the host gcc: a shared library compiled with `-g`
(debug info records the compile directory and file names) and a program
using `__FILE__`. Nothing under the artifact may mention `<store>/tmp`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

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
