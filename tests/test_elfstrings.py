"""Run path strings located in real ELF files made by the host gcc (exchange/elfstrings.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from hdenv.exchange.elfstrings import is_elf, run_paths


def compile_c(tmp_path: Path, name: str, *flags: str, source: str = "int main(void){return 0;}"
              ) -> bytes:
    gcc = require_tool("gcc")
    src = tmp_path / f"{name}.c"
    src.write_text(source + "\n")
    out = tmp_path / name
    subprocess.run([gcc, str(src), "-o", str(out), *flags], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("dtags,tag", [("--enable-new-dtags", "RUNPATH"),
                                       ("--disable-new-dtags", "RPATH")])
def test_finds_the_run_path_and_its_exact_bytes(tmp_path: Path, dtags: str, tag: str) -> None:
    data = compile_c(tmp_path, "prog", f"-Wl,{dtags}", "-Wl,-rpath,/some/store/lib:/other/lib")
    assert is_elf(data)
    found = run_paths(data)
    assert found is not None and len(found) == 1
    rp = found[0]
    assert (rp.value, rp.tag) == ("/some/store/lib:/other/lib", tag)
    assert data[rp.start:rp.end] == b"/some/store/lib:/other/lib" and data[rp.end] == 0


def test_no_run_path_no_dynamic_section_and_not_elf(tmp_path: Path) -> None:
    assert run_paths(compile_c(tmp_path, "plain")) == []
    assert run_paths(compile_c(tmp_path, "obj.o", "-c")) == []  # no program headers
    assert run_paths(b"#!/bin/sh\necho hi\n") is None
    assert run_paths(b"\x7fELF" + b"\xff" * 60) is None  # garbage headers: unreadable, no crash
