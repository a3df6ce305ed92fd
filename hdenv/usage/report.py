"""`hdenv usage report`: counts from the `file:` usage log, over time.

Reads every `*.jsonl` file of the log directory (one per user and host, see
usage/__init__.py), keeps the lines since `--since`, and counts:

- by profile: loads (`load`, `swap` and `auto-swap` lines) per profile name
  (a profile loaded by hash counts under its hash);
- by user: loads per user;
- by package: Python processes that imported each distribution (`python`
  lines from `python-usage = true` profiles).

Each count comes with its number per day (UTC), which is what "is this still
used?" needs. Lines that are not JSON objects (a truncated write, a foreign
file) are skipped and counted, never fatal.

Every user can write the directory, so what is in it is not trusted: a line
counts only for its file's owner (whatever uid or user it claims); a FIFO,
link or directory under a `.jsonl` name is skipped and named, never opened so
as to block or followed; a file named for another uid than its owner's, or
with a second link, is counted for its owner and named as suspect (someone
may be keeping a user's records out of their own file).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import pwd
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import parse

LOAD_ACTIONS = ("load", "swap", "auto-swap")
BY = ("profile", "package", "user")


@dataclass
class Scan:
    events: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    unreadable: list[str] = field(default_factory=list)
    not_regular: list[str] = field(default_factory=list)  # a FIFO, a link, a directory: skipped
    suspect: list[str] = field(default_factory=list)  # named for another uid, or hard-linked
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


def _read(directory: Path, name: str) -> tuple[os.stat_result, list[str]] | None:
    """(status, lines) of the regular file `name`; None if it is not one.

    The directory is one every user can write: a FIFO planted under a `.jsonl`
    name would block a plain `open` until a writer came (the report would hang),
    a link would make it read a file elsewhere. So the file is opened without
    following a link or blocking, and its owner and type come from that open
    file, not from the name, which can be swapped in between.
    """
    fd = os.open(directory / name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
                 | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    with open(fd, encoding="utf-8", errors="replace") as f:
        return st, list(f)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _named_for(name: str) -> int | None:
    """The uid a log file's name gives (`file_name`: UID@HOST[.N].jsonl), if any."""
    uid = name.partition("@")[0]
    return int(uid) if uid.isascii() and uid.isdigit() else None


def scan(directory: Path, since: _dt.datetime | None) -> Scan:
    if not directory.is_dir():
        raise UserError(f"no usage log directory {directory}")
    out = Scan()
    try:
        names = sorted(os.listdir(directory))
    except PermissionError:
        raise UserError(f"cannot list {directory}: permission denied (usage logs are"
                        " for the site's admins)") from None
    seen: set[tuple[int, int]] = set()
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        try:
            found = _read(directory, name)
        except OSError as e:
            (out.not_regular if e.errno == errno.ELOOP else out.unreadable).append(name)
            continue
        if found is None:
            out.not_regular.append(name)
            continue
        st, lines = found
        owner = st.st_uid
        if _named_for(name) not in (None, owner) or st.st_nlink != 1:
            out.suspect.append(name)  # planted under another's name, or a hard link
        if (st.st_dev, st.st_ino) in seen:
            continue  # one file under two names counts once
        seen.add((st.st_dev, st.st_ino))
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
        "not_regular_files": found.not_regular,
        "suspect_files": found.suspect,
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
