"""The README's "Variants, conditions and descriptions" stack, taken from the README
itself and built: what the text under it says must stay true."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import REPO, Runner


def readme_stack(tmp_path: Path) -> Path:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Variants, conditions and descriptions"):]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    path = tmp_path / "variants.toml"
    path.write_text(match.group(1))
    return path


def test_the_readme_variants_stack_does_what_the_readme_says(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    stack = readme_stack(tmp_path)
    built = run_hdenv("build", str(stack), check=True)
    assert [line.split()[0] for line in built.stdout.splitlines()] == [
        "variants-O1", "variants-O3"]
    for opt in ("O1", "O3"):
        tool = store_dir / "names" / f"variants-{opt}" / "current" / "bin" / "tool"
        assert subprocess.run([str(tool)], capture_output=True, text=True,
                              check=True).stdout == f"built with -{opt}\n"
        assert not (tool.parent.parent / "share").exists()  # tool-doc: docs = "no"
    helped = run_hdenv("help", "tool/1.0", check=True).stdout
    assert "package tool/1.0 [OPT=-O1]" in helped and "package tool/1.0 [OPT=-O3]" in helped
    assert "Run tool; it prints its optimisation level." in helped
    assert "variants-O1/1: tool, built two ways" in run_hdenv("whatis", "variants-O1").stdout
    refused = run_hdenv("build", str(stack), "--set", "opt=O2")
    assert refused.returncode == 2 and "allows only O1, O3" in refused.stderr
    run_hdenv("build", str(stack), "--set", "docs=yes", "--set", "opt=O3", check=True)
    man = store_dir / "names" / "variants-O3" / "current" / "share" / "man" / "man1" / "tool.1"
    assert man.read_text() == ".TH TOOL 1\n"
    assert not (store_dir / "names" / "variants-O1" / "current" / "share").exists()
    mods = tmp_path / "mods"
    run_hdenv("modulefiles", "--out", str(mods), check=True)
    assert {p.name for p in (mods / "Core" / "tool").glob("[!.]*.lua")} == {
        "1.0-O1.lua", "1.0-O3.lua"}
