"""`hdenv reset`, site `default-load`, sticky profiles (issue 22 item 4), in real bash.

A profile with `sticky = true` in its stack file, or named in the site
config's `sticky = [...]`, survives purge and unload unless --force; reset
purges and loads the config's `default-load`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shellfixtures import stack_text
from test_shell_function import base_env, bash, write_init

HDENV = str(Path(sys.executable).parent / "hdenv")


def _store(home: Path) -> Path:
    """demo, other, and base last (so its table can take `sticky = true`)."""
    store = home / "store"
    stack = home / "stack.toml"
    stack.write_text(stack_text({"demo": {"env": {"DEMO": "1"}}, "other": {"env": {"OTHER": "1"}},
                                 "base": {"env": {"BASE": "1"}}}) + "sticky = true\n")
    env = base_env(home, store)
    proc = subprocess.run([HDENV, "build", str(stack)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return store


def test_4_reset_default_load_and_sticky(tmp_path: Path) -> None:
    home = tmp_path
    (home / "none.toml").write_text("")
    store = _store(home)
    meta = json.loads((store / "names/base/current/.hdenv/profile.json").read_text())
    assert meta["sticky"] is True
    site = home / "site.toml"
    site.write_text('default-load = ["demo"]\nsticky = ["other"]\n')
    env = {**base_env(home, store), "HDENV_SITE_CONFIG": str(site)}
    init = write_init("bash", env)
    script = f""". {init}
show() {{ echo "$1: ${{HDENV_LOADED-}}" | sed 's/:[a-z2-7]\\{{32\\}}//g'; }}
hdenv load base other demo; show loaded
hdenv purge; show purged
hdenv unload base; show unload
hdenv reset; show reset
hdenv unload --force base; show force-unload
hdenv purge --force; show force-purge
hdenv reset; show reset-again
"""
    proc = bash(script, env, home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "loaded: base/1 other/1 demo/1",
        "purged: base/1 other/1",
        "unload: base/1 other/1",
        "reset: base/1 other/1 demo/1",
        "force-unload: other/1 demo/1",
        "force-purge: ",
        "reset-again: demo/1",
    ], proc.stderr
    assert "base/1 is sticky: kept (--force unloads it)" in proc.stderr
