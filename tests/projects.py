"""Small source projects and the artifacts built from them, for tests that build real code.

`project` writes a source tree (`src/`) and a stack file beside it; `artifact_path` is
where the one artifact of NAME lives (a test that built two builds of NAME lists them
itself).
"""

from __future__ import annotations

from pathlib import Path

from conftest import Runner


def project(where: Path, files: dict[str, str], stack_file: str, stack: str) -> Path:
    """`where/src/` holding `files` and `where/stack_file` holding `stack`; the stack's path."""
    src = where / "src"
    src.mkdir(exist_ok=True)
    for name, text in files.items():
        (src / name).write_text(text)
    path = where / stack_file
    path.write_text(stack)
    return path


def artifact_path(run_hdenv: Runner, name: str) -> Path:
    """The prefix of the one artifact named `name` in the store (fails if not exactly one)."""
    listed = run_hdenv("list", "artifacts", check=True).stdout.splitlines()
    (aid,) = [line.split()[0] for line in listed if line.startswith(f"{name}/")]
    return Path(run_hdenv("path", aid, check=True).stdout.strip())
