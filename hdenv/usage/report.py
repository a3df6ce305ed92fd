"""`hdenv usage report`: counts from the `file:` usage log, over time.

Reads every `*.jsonl` file of the log directory (one per user and host, see
sinks.py), keeps the lines since `--since`, and counts:

- by profile: loads (`load`, `swap` and `auto-swap` lines) per profile name
  (a profile loaded by hash counts under its hash);
- by user: loads per user;
- by package: Python processes that imported each distribution (`python`
  lines from `python-usage = true` profiles).

Each count comes with its number per day (UTC), which is what "is this still
used?" needs. Lines that are not JSON objects (a truncated write, a foreign
file) are skipped and counted, never fatal.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pwd
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .sinks import parse

LOAD_ACTIONS = ("load", "swap", "auto-swap")
BY = ("profile", "package", "user")


@dataclass
class Scan:
    events: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    unreadable: list[str] = field(default_factory=list)
    bad_lines: int = 0


def log_dir(usage_log: str | None, override: Path | None) -> Path:
    """The directory to read: `--from DIR`, else the `file:` usage log in force."""
    if override is not None:
        return override
    if not usage_log:
        raise UserError("no usage log is configured (usage-log = \"file:DIR\" in the site"
                        " config); name a directory with --from DIR")
    kind, target, _ = parse(usage_log)
    if kind != "file":
        raise UserError(f"the usage log is {usage_log!r}, not a file: log; a report reads"
                        " files: name their directory with --from DIR")
    return Path(target)


def parse_since(text: str | None, now: _dt.datetime | None = None) -> _dt.datetime | None:
    """`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (UTC) or `Nd` (N days ago)."""
    if text is None:
        return None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if text.endswith("d") and text[:-1].isascii() and text[:-1].isdigit():
        return now - _dt.timedelta(days=int(text[:-1]))
    try:
        when = _dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        raise UserError(f"--since: not a date: {text!r} (YYYY-MM-DD, YYYY-MM-DDTHH:MM"
                        " or Nd for N days ago)") from None
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


def _stamp(event: dict[str, Any]) -> _dt.datetime | None:
    try:
        when = _dt.datetime.fromisoformat(str(event["time"]).removesuffix("Z"))
    except (KeyError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from f


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def scan(directory: Path, since: _dt.datetime | None) -> Scan:
    if not directory.is_dir():
        raise UserError(f"no usage log directory {directory}")
    out = Scan()
    try:
        names = sorted(os.listdir(directory))
    except PermissionError:
        raise UserError(f"cannot list {directory}: permission denied (usage logs are"
                        " for the site's admins)") from None
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        try:
            owner = os.stat(directory / name, follow_symlinks=False).st_uid
            lines = list(_lines(directory / name))
        except OSError:
            out.unreadable.append(name)
            continue
        out.files += 1
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                out.bad_lines += 1
                continue
            when = _stamp(event) if isinstance(event, dict) else None
            if when is None or event.get("uid") != owner:  # a line counts for its file's owner
                out.bad_lines += 1
                continue
            event["user"] = _user_name(owner)  # who wrote it, whatever the line claims
            if since is None or when >= since:
                event["_day"] = when.date().isoformat()
                out.events.append(event)
    return out


def _keys(event: dict[str, Any], by: str) -> list[str]:
    action = event.get("action")
    if by == "package":
        packages = event.get("packages") if action == "python" else None
        return [str(p) for p in packages] if isinstance(packages, list) else []
    if action not in LOAD_ACTIONS:
        return []
    if by == "user":
        return [str(event.get("user"))]
    return [str(event.get("name") or event.get("hash"))]


def aggregate(found: Scan, by: str, since: _dt.datetime | None) -> dict[str, Any]:
    if by not in BY:
        raise UserError(f"--by must be one of {', '.join(BY)}")
    totals: Counter[str] = Counter()
    days: dict[str, Counter[str]] = defaultdict(Counter)
    for event in found.events:
        for key in _keys(event, by):
            totals[key] += 1
            days[key][event["_day"]] += 1
    rows = [{"key": key, "count": count, "by_day": dict(sorted(days[key].items()))}
            for key, count in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    what = "python processes" if by == "package" else "loads"
    return {
        "by": by,
        "counting": what,
        "since": since.isoformat() if since else None,
        "total": sum(totals.values()),
        "rows": rows,
        "files": found.files,
        "unreadable_files": found.unreadable,
        "skipped_lines": found.bad_lines,
    }


def render(report: dict[str, Any], *, bars: bool, width: int = 80) -> str:
    """One line per key: the count, and on a terminal a bar scaled to the largest."""
    rows = report["rows"]
    since = f" since {report['since']}" if report["since"] else ""
    head = f"{report['counting']} by {report['by']}{since}: {report['total']}"
    if not rows:
        return head + "\n"
    key_width = min(max(len(r["key"]) for r in rows), 40)
    count_width = len(str(rows[0]["count"]))
    room = max(10, width - key_width - count_width - 4)
    top = rows[0]["count"]
    lines = [head]
    for r in rows:
        key = r["key"] if len(r["key"]) <= key_width else r["key"][:key_width - 1] + "…"
        line = f"{key.ljust(key_width)}  {str(r['count']).rjust(count_width)}"
        if bars:
            line += "  " + "█" * max(1, round(r["count"] / top * room))
        lines.append(line)
    return "\n".join(lines) + "\n"
