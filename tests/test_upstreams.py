"""Upstream stores: a user's store on top of a site's, with nothing written upstream.

One user here (the test's); tests/test_multiuser.py does the same across real
Unix users and permissions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Runner

# Packages both stacks have: their ids are the same, so the user builds neither.
COMMON = """
[packages.base]
version = "1"
script = 'mkdir -p "$PREFIX/share/base" && echo base > "$PREFIX/share/base/data"'

[packages.lib]
version = "1"
deps = ["base"]
script = 'mkdir -p "$PREFIX/share/lib" && echo "lib on $HDENV_DEP_BASE" > "$PREFIX/share/lib/data"'
"""

SITE_STACK = """
[stack]
name = "site-tools"
description = "what the site provides"
""" + COMMON + """
[packages.hello-src]
version = "2.10"
sources = [{ url = "https://example.invalid/hello-2.10.tar.gz", sha256 = "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b", strip = 1 }]
script = 'mkdir -p "$PREFIX/share" && cp NEWS "$PREFIX/share/hello-news"'

[packages.tool]
version = "1"
deps = ["lib"]
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\necho site tool\\n' > "$PREFIX/bin/site-tool"
chmod +x "$PREFIX/bin/site-tool"
'''
"""

USER_STACK = """
[stack]
name = "mine"
""" + COMMON + """
[packages.hello-readme]
version = "2.10"
sources = [{ url = "https://example.invalid/hello-2.10.tar.gz", sha256 = "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b", strip = 1 }]
script = 'mkdir -p "$PREFIX/share" && cp README "$PREFIX/share/hello-readme"'

[packages.mytool]
version = "1"
deps = ["lib"]
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\necho my tool; cat %s/share/lib/data\\n' "$HDENV_DEP_LIB" > "$PREFIX/bin/my-tool"
chmod +x "$PREFIX/bin/my-tool"
'''
"""


def snapshot(root: Path) -> dict[str, tuple[int, int, float]]:
    """Every path under `root` with its mode, size and mtime: any write shows."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime)
    return out


def own_artifacts(store: Path) -> list[str]:
    art = store / "artifacts"
    return sorted(f"{n}/{v}" for n in os.listdir(art) for v in os.listdir(art / n)) \
        if art.is_dir() else []


@pytest.fixture
def site(run_hdenv: Runner, tmp_path: Path, shared_sources: Path) -> Path:
    """The site's store; its build got hello's archive from the mirror, users will not."""
    root = tmp_path / "site"
    (tmp_path / "site.toml").write_text(SITE_STACK)
    run_hdenv("build", str(tmp_path / "site.toml"),
              env={"HDENV_STORE": str(root), "HDENV_MIRRORS": str(shared_sources)}, check=True)
    return root


def test_user_store_builds_only_what_the_site_lacks(run_hdenv: Runner, tmp_path: Path,
                                                    site: Path) -> None:
    before = snapshot(site)
    config = tmp_path / "site-config.toml"
    config.write_text(f'upstreams = ["{site}"]\n')
    user = tmp_path / "user"
    env = {"HDENV_STORE": str(user), "HDENV_SITE_CONFIG": str(config)}
    (tmp_path / "mine.toml").write_text(USER_STACK)

    dry = run_hdenv("build", "--dry-run", str(tmp_path / "mine.toml"), env=env, check=True)
    assert [line.split()[2].split("/")[0] for line in dry.stdout.splitlines()] == [
        "hello-readme", "mytool"]
    built = run_hdenv("build", str(tmp_path / "mine.toml"), env=env, check=True)
    assert "2 built, 3 already present" in built.stderr
    assert own_artifacts(user) == ["hello-readme/2.10", "mytool/1"]
    mine = Path(run_hdenv("path", "mine", env=env, check=True).stdout.strip())
    assert mine.parent == user / "profiles"
    out = subprocess.run([mine / "bin" / "my-tool"], capture_output=True, text=True).stdout
    assert out.startswith("my tool\nlib on ") and str(site / "artifacts" / "base") in out

    # The site's own stack, built by the user: everything is upstream, profile included.
    again = run_hdenv("build", str(tmp_path / "site.toml"), env=env, check=True)
    assert "0 built, 5 already present" in again.stderr
    site_tools = Path(run_hdenv("path", "site-tools", env=env, check=True).stdout.strip())
    assert site_tools.parent == site / "profiles"
    assert own_artifacts(user) == ["hello-readme/2.10", "mytool/1"]
    assert snapshot(site) == before, "something was written upstream"

    avail = {e["name"]: e for e in json.loads(run_hdenv("avail", "--json", env=env,
                                                        check=True).stdout)}
    assert avail["mine"]["upstream"] is None and avail["site-tools"]["upstream"] is None
    run_hdenv("build", str(tmp_path / "mine.toml"), env=env, check=True)
    # a name only the site has is shown as the site's
    (user / "names" / "site-tools" / "1").unlink()
    (user / "names" / "site-tools" / "current").unlink()
    (user / "names" / "site-tools").rmdir()
    avail = {e["name"]: e for e in json.loads(run_hdenv("avail", "--json", env=env,
                                                        check=True).stdout)}
    assert avail["site-tools"]["upstream"] == str(site)
    shown_avail = run_hdenv("avail", env=env, check=True).stdout
    assert f" {site} (upstream) " in shown_avail and "   site-tools/1 (D)\n" in shown_avail
    refs = run_hdenv("avail", "--refs", env=env, check=True).stdout.split()
    assert {"mine", "site-tools", "site-tools/1"} <= set(refs)
    shown = json.loads(run_hdenv("show", "--json", "site-tools", env=env, check=True).stdout)
    assert shown["upstream"] == str(site) and shown["path"] == str(site_tools)
    tool_id = next(a for a in shown["artifacts"] if a.startswith("tool/"))
    assert f"upstream: {site}" in run_hdenv("show", tool_id, env=env, check=True).stdout
    assert run_hdenv("verify", "mine", env=env, check=True).stderr.startswith("verified 4 ")
    assert snapshot(site) == before

    # gc in the user's store keeps what the user's names need and never looks upstream
    run_hdenv("gc", env=env, check=True)
    assert own_artifacts(user) == ["hello-readme/2.10", "mytool/1"]
    assert snapshot(site) == before
    assert run_hdenv("verify", "mine", env=env, check=True).stderr.startswith("verified 4 ")


def test_bash_loads_site_and_own_profiles(run_hdenv: Runner, tmp_path: Path,
                                          site: Path) -> None:
    config = tmp_path / "site-config.toml"
    config.write_text(f'upstreams = ["{site}"]\n')
    user = tmp_path / "user"
    env = {"HDENV_STORE": str(user), "HDENV_SITE_CONFIG": str(config)}
    (tmp_path / "mine.toml").write_text(USER_STACK)
    run_hdenv("build", str(tmp_path / "mine.toml"), env=env, check=True)
    init = run_hdenv("init", "bash", env=env, check=True).stdout
    script = tmp_path / "s.sh"
    script.write_text(init + """
hdenv load site-tools && hdenv load mine || exit 9
site-tool && my-tool | head -1
echo "loaded: $HDENV_LOADED"
hdenv unload site-tools
command -v site-tool || echo gone
""")
    venv_bin = str(Path(sys.executable).parent)
    full = {**os.environ, **env, "PATH": f"{venv_bin}:/usr/bin:/bin", "HDENV_CONFIG": "/dev/null"}
    proc = subprocess.run(["bash", "--norc", "--noprofile", str(script)], env=full,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["site tool", "my tool"]
    assert lines[2].startswith("loaded: site-tools/1:") and " mine/1:" in lines[2]
    assert lines[3] == "gone"
