"""What one usage line records, as a JSON object (see README, "Usage logs").

Fields, in this order:
`time` (UTC, ISO 8601 with milliseconds), `user` (the uid's name in the
password database, never `$USER`, which anyone can set; else the uid), `uid`,
`host` (node name), `slurm_job_id` (null outside a
job), `action` (`load`, `unload`, `swap`, `auto-swap` or `python`),
`explicit` (false when hdenv chose the change itself: the profile an
auto-swap replaced, the profiles `purge` unloads), `name` and `generation`
of the profile (null when loaded by hash), `hash`, and, for `swap` and
`auto-swap`, `replaced`: the profiles it unloaded. A `python` line (from a
`python-usage = true` profile) has `packages`: the distributions the process
imported, and `python`: the interpreter's version.

Plain functions over plain data, stdlib only, so the load fast path and a
profile's Python hook (usage/pyhook.py) both use them.
"""

from __future__ import annotations

from ..fastjson import json_dumps

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from collections.abc import Mapping
    from typing import Any

NO_USAGE = "HDENV_NO_USAGE"


def disabled(environ: Mapping[str, str]) -> bool:
    return environ.get(NO_USAGE, "") not in ("", "0")


def who(environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields every line starts with: when, who, where."""
    import posix
    import time

    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    uid = posix.getuid()
    return {
        "time": f"{stamp}.{int(now % 1 * 1000):03d}Z",
        "user": _user_name(uid),
        "uid": uid,
        "host": posix.uname().nodename,
        "slurm_job_id": environ.get("SLURM_JOB_ID") or None,
    }


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def profile_fields(name: str | None, generation: int | None, hash_: str) -> dict[str, Any]:
    return {"name": name, "generation": generation, "hash": hash_}


def event(action: str, explicit: bool, profile: dict[str, Any],
          replaced: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One change to what is loaded; `profile` and `replaced` from `profile_fields`."""
    out: dict[str, Any] = {"action": action, "explicit": explicit, **profile}
    if replaced is not None:
        out["replaced"] = replaced
    return out


def lines(events: list[dict[str, Any]], head: dict[str, Any]) -> list[str]:
    return [json_dumps({**head, **e}) for e in events]


def emit(events: list[dict[str, Any]], environ: Mapping[str, str], sink: str | None) -> None:
    """Send `events` to `sink`; never raises, so a broken sink never breaks a load."""
    if not events or not sink or disabled(environ):
        return
    try:
        from .sinks import send

        head = who(environ)
        send(sink, lines(events, head), int(head["uid"]), str(head["host"]))
    except Exception:  # noqa: BLE001 - a log must never cost the user their load
        pass
