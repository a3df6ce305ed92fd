"""Click commands for sites: `config`, `store fix-permissions`, `usage report`.

Thin: the settings come from config.py, the repair from store/sharing.py,
the report from usage/report.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..config import Settings, load_settings, setting_items
from ..configfiles import config_files
from ..sanitize import printable


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj or {}
    return load_settings(store=obj.get("store"))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def config_report(settings: Settings) -> dict[str, Any]:
    import os

    from ..config import default_config_file

    files = [{"path": path, "role": role, "explicit": explicit,
              "present": os.path.exists(path)}
             for path, explicit, role in config_files(os.environ, str(default_config_file()))]
    return {
        "files": files,
        "settings": {key: {"value": [str(v) for v in value] if isinstance(value, list)
                           else (str(value) if isinstance(value, Path) else value),
                           "source": source}
                     for key, value, source in setting_items(settings)},
    }


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def config_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every setting in force and where it came from (flag, variable, file, default)."""
    report = config_report(_settings(ctx))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for f in report["files"]:
        state = "" if f["present"] else " (absent)"
        via = " (HDENV_CONFIG)" if f["explicit"] and f["role"] == "user" else (
            " (HDENV_SITE_CONFIG)" if f["explicit"] else "")
        click.echo(f"# {f['role']} config: {f['path']}{via}{state}")
    rows = []
    for key, entry in report["settings"].items():
        value = entry["value"]
        text = f"{key} = {_toml_value(value)}" if value is not None else f"# {key} is not set"
        rows.append((text, entry["source"]))
    width = max(len(text) for text, _ in rows)
    for text, source in rows:
        click.echo(f"{text.ljust(width)}  # {source}")


@click.group("store")
def store_group() -> None:
    """Look after a store shared by several users."""


@store_group.command("fix-permissions")
@click.option("--group", help="Unix group that shares the store (default: the store's own).")
@click.pass_context
def fix_permissions_cmd(ctx: click.Context, group: str | None) -> None:
    """Make the store group-shared (set-gid, group-writable) or repair its modes."""
    from ..store.sharing import fix_permissions

    root = _settings(ctx).store
    repair = fix_permissions(root, group)
    click.echo(f"{root}: {repair.changed} change(s)", err=True)
    if repair.refused:
        shown = ", ".join(repair.refused[:3])
        more = f" and {len(repair.refused) - 3} more" if len(repair.refused) > 3 else ""
        click.echo(f"hdenv: could not change {len(repair.refused)} path(s) owned by other"
                   f" users: {shown}{more} (run as root or as their owner)", err=True)
        sys.exit(1)


@click.group("usage")
def usage_group() -> None:
    """What people load and import, from the site's usage log."""


@usage_group.command("report")
@click.option("--since", metavar="DATE", help="YYYY-MM-DD[THH:MM] (UTC) or Nd (N days ago).")
@click.option("--by", type=click.Choice(["profile", "package", "user"]), default="profile",
              show_default=True, help="What to count: loads per profile or user, or Python"
              " processes per imported distribution.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with counts per day).")
@click.option("--from", "from_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Log directory (default: the file: usage-log in force).")
@click.pass_context
def usage_report_cmd(ctx: click.Context, since: str | None, by: str, as_json: bool,
                     from_dir: Path | None) -> None:
    """Counts from the file: usage log, with a bar chart on a terminal."""
    import shutil

    from ..usage import report

    directory = report.log_dir(_settings(ctx).usage_log, from_dir)
    start = report.parse_since(since)
    found = report.scan(directory, start)
    data = report.aggregate(found, by, start)
    for names, what in ((found.unreadable, "not readable"),
                        (found.not_regular, "skipped: not regular files (a FIFO, a link?)"),
                        (found.suspect, "not owned by the uid they are named for, or"
                                        " hard-linked (planted by another user?)")):
        if names:  # names chosen by whoever made the files: shown, never sent raw
            click.echo(printable(f"hdenv: {len(names)} log file(s) {what}, e.g. {names[0]!r}"),
                       err=True)
    if found.bad_lines:
        click.echo(f"hdenv: skipped {found.bad_lines} line(s) that are not usage records",
                   err=True)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(printable(report.render(data, bars=sys.stdout.isatty(),
                                       width=shutil.get_terminal_size().columns)), nl=False)
