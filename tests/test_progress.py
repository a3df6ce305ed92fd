"""Build output: the status line, messages above it, variant names, failed fetches.

The last test runs a real `hdenv build` on a pseudo-terminal, as a user sees it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import select
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from hdenv.build.progress import Progress, labels

ID_A = "zstd/1.5/" + "a" * 32
ID_B = "zstd/1.5/" + "b" * 32
ID_C = "zlib/1.3/" + "c" * 32


def test_labels_name_variants_apart() -> None:
    got = labels([(ID_A, {"compiler": "gcc", "mpi": "openmpi"}),
                  (ID_B, {"compiler": "clang", "mpi": "openmpi"}),
                  (ID_C, {"compiler": "gcc", "mpi": "openmpi"})])
    assert got == {ID_A: "zstd [gcc]", ID_B: "zstd [clang]", ID_C: "zlib"}


def test_labels_fall_back_to_a_short_hash() -> None:
    got = labels([(ID_A, {}), (ID_B, {})])  # e.g. two --set values, no matrix
    assert got == {ID_A: "zstd [aaaaaaa]", ID_B: "zstd [bbbbbbb]"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_messages_never_glue_onto_the_status_line() -> None:
    out = Terminal()
    progress = Progress(stream=out)
    progress.begin(2, {ID_A: "zstd [gcc]"})
    progress.start(ID_A)
    progress._draw()
    progress.say("fetching https://example.org/zstd.tar.gz")
    progress.finish(ID_A, "built")
    progress.close()
    text = out.getvalue()
    # every message starts on a cleared line and ends with a newline
    for message in ("fetching https://example.org/zstd.tar.gz\n", "built zstd [gcc] ("):
        before = text[:text.index(message)]
        assert before.endswith("\r\033[K") or before.endswith("\n"), repr(text)
    assert "(0s)fetching" not in text
    assert "[0/2] building: zstd [gcc]" in text


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(stream=out)
    progress.begin(1, {ID_A: "zstd [gcc]"})
    progress.start(ID_A)
    progress.log_at(ID_A, Path("/store/tmp/build-zstd-x/build.log"))
    progress.fail(ID_A, "build of zstd failed (exit 2)")
    progress.close()
    assert out.getvalue() == (
        f"building zstd [gcc] ({ID_A})\n"
        "  zstd [gcc]: live log /store/tmp/build-zstd-x/build.log\n"
        f"FAILED {ID_A} (zstd [gcc]): build of zstd failed (exit 2)\n")


def read_pty(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run `cmd` with stderr and stdout on a pseudo-terminal; return (status, what it wrote)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_a_real_build_on_a_terminal(tmp_path: Path) -> None:
    src = tmp_path / "src" / "tool"
    src.mkdir(parents=True)
    (src / "tool.sh").write_text("echo tool\n")
    archive = tmp_path / "tool-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="tool-1.0")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    os.replace(archive, mirror / "tool-1.0.tar.gz")
    (tmp_path / "empty-mirror").mkdir()
    (tmp_path / "stack.toml").write_text(f"""
[matrix]
flavour = ["mild", "hot"]

[packages.tool]
version = "1.0"
sources = [{{ url = "file://{tmp_path}/gone/tool-1.0.tar.gz", sha256 = "{sha}", strip = 1 }}]
env = {{ FLAVOUR = "{{{{ flavour }}}}" }}
script = 'sleep 1.2; mkdir -p "$PREFIX/bin"; cp tool.sh "$PREFIX/bin/tool"; echo "$FLAVOUR"'
""")
    env = {**os.environ, "HDENV_STORE": str(tmp_path / "store"),
           "HDENV_CONFIG": str(tmp_path / "none.toml"),
           "HDENV_MIRRORS": f"{tmp_path / 'empty-mirror'} {mirror}",
           "HDENV_JOBS": "1", "COLUMNS": "200"}
    (tmp_path / "none.toml").write_text("")
    hdenv = str(Path(sys.executable).parent / "hdenv")
    status, out = read_pty([hdenv, "build", str(tmp_path / "stack.toml")], env, tmp_path)
    assert status == 0, out
    lines = [re.sub(r".*\r\x1b\[K", "", line) for line in out.replace("\r\n", "\n").split("\n")]
    fetching = [line for line in lines if "fetching" in line]
    assert fetching and all(line.startswith("fetching ") for line in fetching), out
    # mirrors come first: the empty one fails twice (by name, by hash), each on its own line
    failed = [line for line in lines if line.startswith("  failed: ")]
    assert [line.split(": ", 2)[1] for line in failed] == [
        f"{tmp_path}/empty-mirror/tool-1.0.tar.gz", f"{tmp_path}/empty-mirror/sha256/{sha}"], out
    assert any(line.startswith("  tool [mild]: live log ") and line.endswith("build.log")
               for line in lines), out
    assert any(line.startswith("built tool [hot] (") for line in lines), out
    assert "building: tool [" in out  # the status line itself
    assert "building: -" not in out
