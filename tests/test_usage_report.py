"""`hdenv usage report`: counting log lines by profile, user and package, over time."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import Runner

from hdenv.errors import UserError
from hdenv.usage import report


def line(time: str, action: str, **fields: object) -> str:
    return json.dumps({"time": time, "user": "ana", "action": action, "explicit": True,
                       "name": None, "generation": None, "hash": "h1", **fields})


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    (d / "ana@n1.jsonl").write_text("\n".join([
        line("2024-05-01T10:00:00.000Z", "load", name="demo"),
        line("2024-05-01T11:00:00.000Z", "unload", name="demo"),
        line("2024-05-02T10:00:00.000Z", "auto-swap", name="gcc"),
        line("2024-05-03T10:00:00.000Z", "python", packages=["numpy", "six"]),
        "{not json",
    ]) + "\n")
    (d / "bob@n2.jsonl").write_text("\n".join([
        line("2024-05-02T09:00:00.000Z", "swap", name="demo", user="bob"),
        line("2024-05-03T09:00:00.000Z", "load", hash="abcdef", user="bob"),
        line("2024-05-03T09:30:00.000Z", "python", packages=["six"], user="bob"),
    ]) + "\n")
    (d / "README").write_text("not a log\n")
    return d


def test_counts_by_profile_user_and_package_with_days(logs: Path) -> None:
    found = report.scan(logs, None)
    assert found.files == 2 and found.bad_lines == 1
    by_profile = report.aggregate(found, "profile", None)
    assert [(r["key"], r["count"]) for r in by_profile["rows"]] == [
        ("demo", 2), ("abcdef", 1), ("gcc", 1)]
    assert by_profile["rows"][0]["by_day"] == {"2024-05-01": 1, "2024-05-02": 1}
    by_user = report.aggregate(found, "user", None)
    assert [(r["key"], r["count"]) for r in by_user["rows"]] == [("ana", 2), ("bob", 2)]
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
