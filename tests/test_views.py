"""What `hdenv show` and `hdenv list` print (profile/views.py), on a real demo build."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import EXAMPLES, Runner, require_tool


def _built(run_hdenv: Runner, tmp_path: Path) -> dict[str, str]:
    require_tool("gcc")
    shutil.copytree(EXAMPLES / "demo", tmp_path / "demo")
    run_hdenv("build", str(tmp_path / "demo" / "stack.toml"), check=True)
    rows = run_hdenv("list", "artifacts", check=True).stdout.splitlines()
    return {line.split("/")[0]: line.split()[0] for line in rows}


def test_show_prints_a_spec_as_text_and_json_exactly(run_hdenv: Runner, tmp_path: Path) -> None:
    ids = _built(run_hdenv, tmp_path)
    text = run_hdenv("show", ids["greet"], check=True).stdout
    spec = json.loads(run_hdenv("show", ids["greet"], "--json", check=True).stdout)["spec"]
    body = text[text.index("\nspec:\n") + 1:].splitlines()
    assert body[:4] == ["spec:", "  kind:       build", "  name:       greet",
                        "  version:    1.0"]
    assert f"  dep:        {ids['libgreet']}" in body
    assert f"  build dep:  {ids['gcc']}" in body
    assert "  env:        CFLAGS=-O2" in body
    script = body[body.index("  script:") + 1:]
    assert script == ["    " + line for line in spec["script"].splitlines()]
    assert not [line for line in body if line.strip().startswith(("{", "}", '"'))]
    host = run_hdenv("show", ids["gcc"], check=True).stdout
    gcc_line = subprocess.run(["gcc", "--version"], capture_output=True, text=True
                              ).stdout.splitlines()[0]
    (prog,) = [x for x in host.splitlines() if x.startswith("  program:    gcc  ")]
    assert prog.endswith("  " + gcc_line)
    assert "  family:     compiler" in host
