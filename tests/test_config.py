"""Settings layers: site file < user file < HDENV_* < flags, and `hdenv config` saying which."""

from __future__ import annotations

import json
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
