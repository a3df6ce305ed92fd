"""`hdenv usage report`: counting log lines by profile, user and package, over time."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from conftest import Runner, require

from hdenv.errors import UserError
from hdenv.usage import report


def line(time: str, action: str, uid: int = 0, **fields: object) -> str:
    return json.dumps({"time": time, "user": "claimed", "uid": uid, "action": action,
                       "explicit": True, "name": None, "generation": None, "hash": "h1",
                       **fields})


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Logs of root (uid 0) and daemon (uid 1): a line counts for its file's owner only."""
    require(os.geteuid() == 0, "the log files must belong to two users (run as root)")
    d = tmp_path / "logs"
    d.mkdir()
    (d / "0@n1.jsonl").write_text("\n".join([
        line("2024-05-01T10:00:00.000Z", "load", name="demo"),
        line("2024-05-01T11:00:00.000Z", "unload", name="demo"),
        line("2024-05-02T10:00:00.000Z", "auto-swap", name="gcc"),
        line("2024-05-03T10:00:00.000Z", "python", packages=["numpy", "six"]),
        "{not json",
    ]) + "\n")
    (d / "1@n2.jsonl").write_text("\n".join([
        line("2024-05-02T09:00:00.000Z", "swap", 1, name="demo"),
        line("2024-05-03T09:00:00.000Z", "load", 1, hash="abcdef"),
        line("2024-05-03T09:30:00.000Z", "python", 1, packages=["six"]),
        line("2024-05-03T09:40:00.000Z", "load", 0, name="forged"),  # not its owner's uid
    ]) + "\n")
    os.chown(d / "1@n2.jsonl", 1, 1)
    (d / "README").write_text("not a log\n")
    return d


def test_counts_by_profile_user_and_package_with_days(logs: Path) -> None:
    found = report.scan(logs, None)
    assert found.files == 2 and found.bad_lines == 2  # "{not json" and the forged line
    by_profile = report.aggregate(found, "profile", None)
    assert [(r["key"], r["count"]) for r in by_profile["rows"]] == [
        ("demo", 2), ("abcdef", 1), ("gcc", 1)]
    assert by_profile["rows"][0]["by_day"] == {"2024-05-01": 1, "2024-05-02": 1}
    by_user = report.aggregate(found, "user", None)
    assert [(r["key"], r["count"]) for r in by_user["rows"]] == [
        ("daemon", 2), ("root", 2)]
    by_package = report.aggregate(found, "package", None)
    assert [(r["key"], r["count"]) for r in by_package["rows"]] == [("six", 2), ("numpy", 1)]


def test_since_filters_and_accepts_dates_and_days(logs: Path) -> None:
    since = report.parse_since("2024-05-02")
    rows = report.aggregate(report.scan(logs, since), "profile", since)["rows"]
    assert [(r["key"], r["count"]) for r in rows] == [("abcdef", 1), ("demo", 1), ("gcc", 1)]
    now = dt.datetime(2024, 5, 10, tzinfo=dt.timezone.utc)
    assert report.parse_since("7d", now) == dt.datetime(2024, 5, 3, tzinfo=dt.timezone.utc)
    with pytest.raises(UserError, match="not a date"):
        report.parse_since("yesterday")


def test_render_draws_bars_only_on_a_terminal(logs: Path) -> None:
    data = report.aggregate(report.scan(logs, None), "profile", None)
    plain = report.render(data, bars=False)
    assert plain.splitlines() == ["loads by profile: 4", "demo    2", "abcdef  1", "gcc     1"]
    drawn = report.render(data, bars=True, width=40).splitlines()
    assert drawn[1].count("█") > drawn[2].count("█") > 0


def test_cli_report_reads_the_configured_file_log(run_hdenv: Runner, logs: Path,
                                                  tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f'usage-log = "file:{logs}"\n')
    proc = run_hdenv("usage", "report", "--by", "package", "--json", "--since", "2024-05-03",
                     env={"HDENV_SITE_CONFIG": str(site)}, check=True)
    data = json.loads(proc.stdout)
    assert [(r["key"], r["count"]) for r in data["rows"]] == [("six", 2), ("numpy", 1)]
    assert data["since"] == "2024-05-03T00:00:00+00:00"
    site.write_text('usage-log = "udp://127.0.0.1:9"\n')
    proc = run_hdenv("usage", "report", env={"HDENV_SITE_CONFIG": str(site)})
    assert proc.returncode == 2 and "not a file: log" in proc.stderr
    proc = run_hdenv("usage", "report", "--from", str(tmp_path / "none"))
    assert (proc.returncode, proc.stderr) == (
        2, f"hdenv: error: no usage log directory {tmp_path / 'none'}\n")
