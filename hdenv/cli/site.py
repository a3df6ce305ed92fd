"""Click commands for sites: `config`, `store fix-permissions`, `usage report`.

Thin: the settings come from config.py, the repair from store/sharing.py,
the report from usage/report.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..config import Settings, load_settings
from ..sanitize import printable


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj or {}
    return load_settings(store=obj.get("store"))


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def config_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every setting in force and where it came from (flag, variable, file, default)."""
    from .plain import config_text

    click.echo(config_text(_settings(ctx), as_json), nl=False)


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
