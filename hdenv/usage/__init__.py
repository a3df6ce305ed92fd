"""A usage line: what it records, and where it goes (syslog, a file, a datagram).

It is all in the package's own module: the load fast path imports it when a
`usage-log` is configured, and each module more was ~0.18 ms of every load
(`benchmarks/bench_load.py`). `report.py`, `pyhook.py` and `pyinstall.py` are
imported only by the commands that need them.

## The line

One JSON object (see README, "Usage logs"). Fields, in this order:
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
profile's Python hook (pyhook.py) both use them.

## The sinks

They run on the load fast path (`python -I -S`, see shell/fastload.py): no `os`,
no `socket` (its `enum` import alone costs more than a load may), only
built-in modules and the C extension a sink needs, imported when used.

- `syslog` (or `syslog:FACILITY`, e.g. `syslog:local0`): one message per
  line, ident `hdenv`, priority info; the site's syslog daemon forwards it.
- `file:DIR`: appended to `DIR/UID@HOST.jsonl`, one `write` per line with
  O_APPEND. One file per user and host: no two machines ever append to the
  same file (appends from several NFS clients can interleave), and a user
  cannot alter another's lines. A site makes DIR with mode 3733 (sticky,
  set-gid to an admin group, world-writable but not listable): every user can
  create their own file, only the admins can read them all. Files are
  created 0640. The uid names the file, never `$USER`: in a directory others
  can write, the file is opened without following a link or blocking (a
  FIFO planted under the name cannot hang a load) and used only if it is a
  regular file of the user's own with no other link (a hard link someone
  made there to a file of the user's that they may write, a group-writable
  `~/.bashrc`, would get the records appended); a name someone else took makes hdenv try
  `UID@HOST.2.jsonl` and so on, so a planted file cannot swallow a user's
  records, and `hdenv usage report` counts a line only when the file's owner
  is the uid the line names.
- `udp://HOST:PORT` (`udp://[::1]:PORT` for IPv6): one datagram per line,
  sent without waiting. Give an IP address: a host name costs a DNS lookup on
  every load. A load in bash has the shell send them (`Shell.datagrams`, through
  bash's `/dev/udp`): loading `_socket` here was ~0.5 ms of every logged load.
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
        head = who(environ)
        send(sink, lines(events, head), int(head["uid"]), str(head["host"]))
    except Exception:  # noqa: BLE001 - a log must never cost the user their load
        pass



FACILITIES = ("user", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
              "local7", "daemon", "auth", "authpriv")


def parse(sink: str) -> tuple[str, str, int]:
    """(kind, target, port) of a sink setting; ValueError naming what is wrong."""
    if sink == "syslog" or sink.startswith("syslog:"):
        facility = sink.partition(":")[2] or "user"
        if facility not in FACILITIES:
            raise ValueError(f"unknown syslog facility {facility!r}"
                             f" (one of {', '.join(FACILITIES)})")
        return "syslog", facility, 0
    if sink.startswith("file:"):
        directory = sink[len("file:"):]
        if not directory.startswith("/"):
            raise ValueError(f"file: needs an absolute directory, got {directory!r}")
        return "file", directory.rstrip("/") or "/", 0
    if sink.startswith("udp://"):
        hostport = sink[len("udp://"):].rstrip("/")
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = hostport.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"udp:// needs HOST:PORT, got {hostport!r}")
        return "udp", host, int(port)
    raise ValueError(f"not a usage log: {sink!r} (syslog, file:DIR or udp://HOST:PORT)")


ALTERNATES = 8  # names tried after UID@HOST.jsonl when another user took it


def file_name(uid: int, host: str, n: int = 1) -> str:
    """A user's log file in a `file:` directory; '/' cannot reach another directory."""
    suffix = "" if n == 1 else f".{n}"
    return f"{uid}@{host}{suffix}.jsonl".replace("/", "_")


def send(sink: str, lines: list[str], uid: int, host: str) -> None:
    """Deliver `lines` (each one JSON object, no newline); OSError/ValueError if it cannot."""
    kind, target, port = parse(sink)
    if kind == "file":
        data = "".join(line + "\n" for line in lines).encode("utf-8", "replace")
        for n in range(1, ALTERNATES + 1):
            if _append(f"{target}/{file_name(uid, host, n)}", data, uid):
                return
        raise PermissionError(f"{target}: every log file name of uid {uid} is taken")
    elif kind == "udp":
        _datagrams(target, port, lines)
    else:
        _syslog(target, lines)


def _append(path: str, data: bytes, uid: int) -> bool:
    """Append to `path` if it is (or can be made) a regular file of `uid`; False if not.

    O_NONBLOCK: a FIFO someone planted under the name opens at once (or fails
    with ENXIO) instead of blocking the load until a reader comes. One link
    only: a file of `uid`'s that another user may write (group-writable) can be
    hard-linked into the shared directory under this name by them
    (fs.protected_hardlinks allows it), and the log would append to it.
    """
    import posix

    try:
        fd = posix.open(path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC
                        | posix.O_NOFOLLOW | posix.O_NONBLOCK, 0o640)
    except OSError as e:
        if e.errno in (13, 6, 40, 21):  # EACCES, ENXIO (a FIFO), ELOOP (a link), EISDIR
            return False
        raise
    try:
        st = posix.fstat(fd)
        if st.st_uid != uid or (st.st_mode & 0o170000) != 0o100000 or st.st_nlink != 1:
            return False  # planted: not ours, not a regular file, or a link to another
        posix.write(fd, data)
        return True
    finally:
        posix.close(fd)


def _datagrams(host: str, port: int, lines: list[str]) -> None:
    _socket = _socket_module()
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    if not _is_ip(_socket, host, family):
        family, _, _, _, address = _socket.getaddrinfo(host, port, 0, _socket.SOCK_DGRAM)[0]
        host = str(address[0])
    sock = _socket.socket(family, _socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for line in lines:
            sock.sendto(line.encode("utf-8", "replace"), (host, port))
    finally:
        sock.close()


def _is_ip(_socket: Any, host: str, family: int) -> bool:
    try:
        _socket.inet_pton(family, host)
    except OSError:
        return False
    return True


def _socket_module() -> Any:
    """`_socket`, loaded straight from the interpreter's `lib-dynload` when it is a
    shared library there (pyenv's and python.org's builds; Debian's has it built in).

    The import system's search for it (a stat in each directory of `sys.path`, the
    package's first) was 0.15 ms of the 0.69 ms `import _socket` took on the load
    fast path here (median of 80 starts), when a logged load should cost under 1 ms;
    the library is the one `import` would load.
    """
    import sys

    found = sys.modules.get("_socket")
    if found is None and "_socket" not in sys.builtin_module_names:
        import _imp

        spec_type = type(sys.__spec__)  # importlib's ModuleSpec, without importing importlib
        suffix = _imp.extension_suffixes()[0]
        for entry in sys.path:
            if entry.endswith("/lib-dynload"):
                try:
                    found = _imp.create_dynamic(
                        spec_type("_socket", None, origin=f"{entry}/_socket{suffix}"))
                    _imp.exec_dynamic(found)
                except Exception:  # noqa: BLE001 - not there, or an interpreter whose
                    found = None  # private _imp differs: the import system finds it
                break
    if found is None:
        import _socket as found
    return found


def _syslog(facility: str, lines: list[str]) -> None:
    import syslog

    syslog.openlog("hdenv", 0, getattr(syslog, f"LOG_{facility.upper()}"))
    for line in lines:
        syslog.syslog(syslog.LOG_INFO, line)
    syslog.closelog()
