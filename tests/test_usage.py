"""The usage line and its sinks (usage/__init__.py): settings, lines, each sink delivering."""

from __future__ import annotations

import _socket
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hdenv import usage


def test_parse_accepts_the_three_forms_and_names_what_is_wrong() -> None:
    assert usage.parse("syslog") == ("syslog", "user", 0)
    assert usage.parse("syslog:local3") == ("syslog", "local3", 0)
    assert usage.parse("file:/var/log/hdenv/") == ("file", "/var/log/hdenv", 0)
    assert usage.parse("udp://10.0.0.5:514") == ("udp", "10.0.0.5", 514)
    assert usage.parse("udp://[::1]:9999") == ("udp", "::1", 9999)
    for bad, why in (("syslog:kern9", "facility"), ("file:relative/dir", "absolute"),
                     ("udp://host", "HOST:PORT"), ("udp://h:70000", "HOST:PORT"),
                     ("tcp://h:1", "not a usage log")):
        with pytest.raises(ValueError, match=why):
            usage.parse(bad)


def test_file_sink_appends_one_line_per_event_to_its_own_file(tmp_path: Path) -> None:
    uid = os.getuid()
    usage.send(f"file:{tmp_path}", ['{"a":1}', '{"b":"é"}'], uid, "node1")
    usage.send(f"file:{tmp_path}", ['{"c":2}'], uid, "node1")
    log = tmp_path / f"{uid}@node1.jsonl"
    assert log.read_text(encoding="utf-8") == '{"a":1}\n{"b":"é"}\n{"c":2}\n'
    assert log.stat().st_mode & 0o777 == 0o640 & ~_umask()
    usage.send(f"file:{tmp_path}", ['{"x":1}'], uid, "h/o/st")
    assert (tmp_path / f"{uid}@h_o_st.jsonl").is_file()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_file_sink_never_follows_a_planted_link(tmp_path: Path) -> None:
    """The name is taken by a link: the target is untouched, the line goes to UID@HOST.2."""
    uid = os.getuid()
    target = tmp_path / "victim"
    target.write_text("mine\n")
    (tmp_path / f"{uid}@node1.jsonl").symlink_to(target)
    usage.send(f"file:{tmp_path}", ['{"a":1}'], uid, "node1")
    assert target.read_text() == "mine\n"
    assert (tmp_path / f"{uid}@node1.2.jsonl").read_text() == '{"a":1}\n'


def test_udp_sink_sends_datagrams() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    try:
        port = listener.getsockname()[1]
        usage.send(f"udp://127.0.0.1:{port}", ['{"a":1}', '{"b":2}'], os.getuid(), "node1")
        assert [listener.recv(100), listener.recv(100)] == [b'{"a":1}', b'{"b":2}']
    finally:
        listener.close()


def test_udp_sink_in_a_bare_interpreter_sends_with_the_interpreters_own_socket() -> None:
    """As on the load fast path (`python -I -S`, `_socket` not yet imported): the
    datagram arrives, sent by the interpreter's own `_socket` (the file `import` finds,
    or built in), which a later `import _socket` returns instead of loading again."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    package = str(Path(usage.__file__).parents[2])
    code = f"""if True:
        import sys
        sys.path.insert(0, {package!r})
        from hdenv import usage
        assert "_socket" not in sys.modules
        usage.send("udp://127.0.0.1:{listener.getsockname()[1]}", ['{{"c":3}}'], 0, "n")
        module = usage._socket_module()
        import _socket
        print(getattr(module, "__file__", "built-in"), _socket is module)
    """
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                              text=True, timeout=60, check=True)
        assert listener.recv(100) == b'{"c":3}'
    finally:
        listener.close()
    assert proc.stdout.split() == [getattr(_socket, "__file__", "built-in"), "True"]


def test_emit_builds_lines_and_never_raises(tmp_path: Path) -> None:
    env = {"USER": "ana", "SLURM_JOB_ID": "7"}
    prof = usage.profile_fields("demo", 3, "h" * 32)
    usage.emit([usage.event("swap", True, prof, [usage.profile_fields(None, None, "x")])],
                env, f"file:{tmp_path}")
    (log,) = tmp_path.iterdir()
    line = json.loads(log.read_text())
    assert line["action"] == "swap" and line["generation"] == 3 and line["slurm_job_id"] == "7"
    assert line["replaced"] == [{"name": None, "generation": None, "hash": "x"}]
    usage.emit([usage.event("load", True, prof)], env, "file:/nonexistent/x")  # no raise
    usage.emit([usage.event("load", True, prof)], {**env, "HDENV_NO_USAGE": "1"},
                f"file:{tmp_path}")
    assert len(log.read_text().splitlines()) == 1
