"""Settings layers: site file < user file < HDENV_* < flags, and `hdenv config` saying which."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Runner


def settings(run_hdenv: Runner, env: dict[str, str], *args: str) -> dict[str, dict[str, object]]:
    out = run_hdenv(*args, "config", "--json", env=env, check=True).stdout
    return dict(json.loads(out)["settings"])


def test_site_file_under_user_file_under_environment_under_flags(
        run_hdenv: Runner, tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('upstreams = ["/sw/hdenv"]\nusage-log = "file:/var/log/hdenv"\n'
                    "jobs = 3\nstore = '/site/store'\n")
    user = tmp_path / "user.toml"
    user.write_text("jobs = 5\n")
    env = {"HDENV_SITE_CONFIG": str(site), "HDENV_CONFIG": str(user), "HDENV_JOBS": "",
           "HDENV_STORE": ""}
    got = settings(run_hdenv, env)
    assert got["upstreams"] == {"value": ["/sw/hdenv"], "source": str(site)}
    assert got["usage-log"] == {"value": "file:/var/log/hdenv", "source": str(site)}
    assert got["jobs"] == {"value": 5, "source": str(user)}
    assert got["store"] == {"value": "/site/store", "source": str(site)}
    assert got["build-jobs"] == {"value": None, "source": "default"}

    env["HDENV_STORE"] = str(tmp_path / "mine")
    assert settings(run_hdenv, env)["store"] == {"value": str(tmp_path / "mine"),
                                                 "source": "HDENV_STORE"}
    flagged = settings(run_hdenv, env, "--store", str(tmp_path / "flag"))
    assert flagged["store"] == {"value": str(tmp_path / "flag"), "source": "--store"}

    text = run_hdenv("config", env=env, check=True).stdout.splitlines()
    assert text[0] == f"# user config: {user} (HDENV_CONFIG)"
    assert text[1] == f"# site config: {site} (HDENV_SITE_CONFIG)"
    assert any(line.startswith('upstreams = ["/sw/hdenv"]') and line.endswith(f"# {site}")
               for line in text)
    assert any(line.startswith("# build-jobs is not set") for line in text)


def test_no_site_file_and_broken_site_files(run_hdenv: Runner, tmp_path: Path) -> None:
    got = settings(run_hdenv, {"HDENV_SITE_CONFIG": ""})
    assert got["upstreams"] == {"value": [], "source": "default"}

    missing = tmp_path / "nosuch.toml"
    proc = run_hdenv("config", env={"HDENV_SITE_CONFIG": str(missing)})
    assert proc.returncode == 2
    assert proc.stderr == f"hdenv: error: {missing}: config file does not exist\n"

    bad = tmp_path / "bad.toml"
    bad.write_text('usage-log = "tcp://x:1"\n')
    proc = run_hdenv("list", "artifacts", env={"HDENV_SITE_CONFIG": str(bad)})
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"hdenv: error: {bad}: usage-log: not a usage log: 'tcp://x:1'")
    assert len(proc.stderr.splitlines()) == 1

    bad.write_text("upstreams = 3\n")
    proc = run_hdenv("list", "artifacts", env={"HDENV_SITE_CONFIG": str(bad)})
    assert proc.returncode == 2
    assert proc.stderr == f"hdenv: error: {bad}: 'upstreams' must be a list of strings\n"


def test_relative_paths_in_a_config_file_are_taken_from_its_directory(
        run_hdenv: Runner, tmp_path: Path) -> None:
    """A site admin writes `store = "store"` next to the file; users run hdenv from
    anywhere. Flags and variables stay relative to the working directory."""
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text('store = "store"\nupstreams = ["../site"]\n'
                      'mirrors = ["mirror", "https://example.org/m"]\n'
                      'signing-key = "keys/k.secret"\ncaches = ["cache", "oci://h:5000/r"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"HDENV_CONFIG": str(config), "HDENV_STORE": ""}
    shown = run_hdenv("config", env=env, cwd=elsewhere, check=True).stdout
    assert f'store = "{etc}/store"' in shown
    assert f'upstreams = ["{tmp_path}/site"]' in shown
    assert f'mirrors = ["{etc}/mirror", "https://example.org/m"]' in shown
    assert f'signing-key = "{etc}/keys/k.secret"' in shown
    assert f'caches = ["{etc}/cache", "oci://h:5000/r"]' in shown
    flagged = run_hdenv("--store", "mine", "config", env=env, cwd=elsewhere, check=True).stdout
    assert f'store = "{elsewhere}/mine"' in flagged
    # the load fast path finds the same store: a profile built there loads from elsewhere
    stack = tmp_path / "s.toml"
    stack.write_text('[stack]\nname = "rel"\n\n[packages.t]\nversion = "1"\n'
                     'script = \'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\\\necho rel\\\\n"'
                     ' > "$PREFIX/bin/reltool" && chmod +x "$PREFIX/bin/reltool"\'\n')
    run_hdenv("build", str(stack), env=env, cwd=tmp_path, check=True)
    assert (etc / "store" / "names" / "rel").is_dir()
    exe = str(Path(sys.executable).parent / "hdenv")
    script = f'eval "$({exe} init bash)"\nhdenv load rel && reltool\n'
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=elsewhere,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "HDENV_CONFIG": str(config), "HDENV_SITE_CONFIG": ""},
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout == "rel\n", proc.stderr
