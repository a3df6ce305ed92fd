"""Host artifacts, against real programs on this machine and real scripts in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import require_tool

from hdenv.build import host
from hdenv.errors import BuildError, UserError
from hdenv.store.layout import Store

COMPILERS = {"cc", "gcc", "g++", "c++", "cpp", "clang", "as", "ld", "ld.bfd", "ld.gold",
             "ar", "nm", "strip", "ranlib", "tcc", "icc"}


need = require_tool


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store").ensure()  # a store that exists, as in use


def bin_links(store: Store, aid: str) -> dict[str, str]:
    bindir = store.artifact_dir(aid) / "bin"
    return {p.name: os.readlink(p) for p in bindir.iterdir()}


# -- capturing real programs ---------------------------------------------------

def test_capture_sh_links_to_real_file(store: Store) -> None:
    sh = need("sh")
    aid = host.capture(store, "shell", ["sh"])
    name, _version, _hash = aid.split("/")
    assert name == "shell"
    links = bin_links(store, aid)
    assert links == {"sh": os.path.realpath(sh)}
    assert os.path.isabs(links["sh"])
    out = subprocess.run([str(store.artifact_dir(aid) / "bin" / "sh"), "-c", "echo ok"],
                         capture_output=True, text=True, check=True)
    assert out.stdout == "ok\n"
    meta = store.artifact_meta(aid)
    assert meta["kind"] == "host" and meta["runtime_deps"] == []
    spec = store.read_spec(aid.rsplit("/", 1)[1])
    assert spec["kind"] == "host" and spec["programs"]["sh"]["path"] == os.path.realpath(sh)


def test_capture_gcc_version_and_family(store: Store) -> None:
    gcc = need("gcc")
    aid = host.capture(store, "gcc", ["gcc"], family="compiler")
    name, version, _ = aid.split("/")
    spec = store.read_spec(aid.rsplit("/", 1)[1])
    assert name == "gcc"
    assert version.count(".") >= 1 and version.replace(".", "").isdigit()
    assert version in spec["programs"]["gcc"]["version"]
    assert spec["family"] == "compiler"
    link = store.artifact_dir(aid) / "bin" / "gcc"
    assert os.readlink(link) == os.path.realpath(gcc)
    out = subprocess.run([str(link), "--version"], capture_output=True, text=True, check=True)
    assert version in out.stdout


def test_capture_is_idempotent(store: Store) -> None:
    need("sh")
    first = host.capture(store, "shell", ["sh"])
    meta_before = store.artifact_meta_path(first).stat().st_mtime_ns
    second = host.capture(store, "shell", ["sh"])
    assert first == second
    assert store.artifact_meta_path(first).stat().st_mtime_ns == meta_before
    assert store.list_artifacts() == [first]


def test_link_keeps_requested_name_and_argv0(store: Store, tmp_path: Path) -> None:
    """A program reached through a differently named link answers as that name."""
    sh = os.path.realpath(need("sh"))
    if os.path.basename(sh) != "dash":
        pytest.skip("needs sh to be dash (its error message names argv[0])")
    alias = tmp_path / "tools" / "mysh"
    alias.parent.mkdir()
    alias.symlink_to(sh)
    spec = host.host_spec(store, "alias", [str(alias)])
    assert spec["programs"]["mysh"]["path"] == sh
    assert "mysh" in spec["programs"]["mysh"]["version"]
    aid = host.capture(store, "alias", [str(alias)])
    assert bin_links(store, aid) == {"mysh": sh}


# -- what the hash covers --------------------------------------------------------

def test_same_version_other_bytes_keeps_the_id_and_records_the_hash(store: Store,
                                                                     tmp_path: Path) -> None:
    """The id covers names, paths and reported versions; bytes go to the metadata
    (a rebuild of the same version changes no id), and into the id with
    host-identity = "content"."""
    prog = script(tmp_path / "bin" / "tool", 'echo "tool 1.0"\n')
    first = host.capture(store, "tool", [str(prog)])
    old_digest = store.artifact_meta(first)["host_files"][str(prog)]
    strict = host.capture(store, "tool", [str(prog)], identity="content")
    prog.write_text("#!/bin/sh\n" + 'echo "tool 1.0"  # rebuilt\n')
    assert host.capture(store, "tool", [str(prog)]) == first
    assert host.capture(store, "tool", [str(prog)], identity="content") != strict
    spec = store.read_spec(strict.rsplit("/", 1)[1])
    assert spec["programs"]["tool"]["sha256"] == old_digest
    assert "sha256" not in store.read_spec(first.rsplit("/", 1)[1])["programs"]["tool"]
    # verify reports the drift of the version-identified artifact
    from hdenv.store.verify import host_file_drift as host_drift
    (drift,) = host_drift(store, first)
    assert str(prog) in drift and "drift" in drift


def test_changed_content_changes_id(store: Store, tmp_path: Path) -> None:
    prog = script(tmp_path / "bin" / "tool", 'echo "tool 1.0"\n')
    first = host.capture(store, "tool", [str(prog)])
    # Same size, rewritten immediately: only a content check can notice.
    prog.write_text("#!/bin/sh\n" + 'echo "tool 1.1"\n')
    second = host.capture(store, "tool", [str(prog)])
    assert first != second
    assert first.split("/")[1] == "1.0" and second.split("/")[1] == "1.1"
    assert store.has_artifact(first) and store.has_artifact(second)


def test_version_output_enters_hash(store: Store, tmp_path: Path) -> None:
    """Same file content, different version output (read from a file) -> different id."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "VERSION").write_text("2.0.1\n")
    prog = script(tmp_path / "bin" / "tool", 'echo "tool $(cat "$(dirname "$0")/VERSION")"\n')
    spec1 = host.host_spec(store, "tool", [str(prog)])
    assert spec1["programs"]["tool"]["version"] == "tool 2.0.1"
    assert spec1["version"] == "2.0.1"
    (tmp_path / "bin" / "VERSION").write_text("2.0.2\n")
    host.cache_path(store).unlink(missing_ok=True)  # unchanged content: a cache would answer
    spec2 = host.host_spec(store, "tool", [str(prog)])
    assert spec2["programs"]["tool"]["path"] == spec1["programs"]["tool"]["path"]
    assert spec2["version"] == "2.0.2"
    assert host.capture(store, "tool", [str(prog)]).split("/")[2] != \
        host.artifact_id(spec1).split("/")[2]


def test_version_fallback_flag_and_exit_status(store: Store, tmp_path: Path) -> None:
    v_only = script(tmp_path / "a" / "vonly",
                    'if [ "$1" = -V ]; then echo "vonly v3.4"; else exit 1; fi\n')
    failing = script(tmp_path / "b" / "failing", 'echo "no such option 9.9"; exit 3\n')
    spec = host.host_spec(store, "mixed", [str(v_only), str(failing)])
    assert spec["version"] == "3.4"
    assert spec["programs"]["vonly"]["version"] == "vonly v3.4"
    assert spec["programs"]["failing"]["version"] == "no such option 9.9\n[exit 3]"
    # a failing first program gives no version number, even if one appears in its output
    assert host.host_spec(store, "failing", [str(failing)])["version"] == "host"


def test_version_timeout_kills_program(store: Store, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "VERSION_TIMEOUT", 0.5)
    marker = tmp_path / "started"
    hang = script(tmp_path / "bin" / "hang", f'echo x >> "{marker}"; exec sleep 30\n')
    started = time.monotonic()
    spec = host.host_spec(store, "hang", [str(hang)])
    assert time.monotonic() - started < 5
    assert spec["programs"]["hang"]["version"] == "[timed out]"
    assert marker.read_text() == "x\n"  # no further flags tried after a hang


# -- resolving -----------------------------------------------------------------

def test_missing_and_bad_programs_are_user_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nosuchprogram-hdenv"):
        host.resolve_program("nosuchprogram-hdenv")
    with pytest.raises(UserError, match="does not exist"):
        host.resolve_program(str(tmp_path / "absent"))
    with pytest.raises(UserError, match="absolute path"):
        host.resolve_program("bin/tool")
    plain = tmp_path / "plain"
    plain.write_text("data")
    with pytest.raises(UserError, match="not executable"):
        host.resolve_program(str(plain))
    with pytest.raises(UserError, match="not found on PATH"):
        host.capture(store, "x", ["nosuchprogram-hdenv"])
    with pytest.raises(UserError, match="at least one"):
        host.capture(store, "x", [])
    with pytest.raises(UserError, match="bad host package name"):
        host.capture(store, "../evil", ["sh"])
    a = script(tmp_path / "a" / "tool", "echo a\n")
    b = script(tmp_path / "b" / "tool", "echo b\n")
    with pytest.raises(UserError, match="given twice"):
        host.capture(store, "x", [str(a), str(b)])
    assert store.list_artifacts() == []


def test_search_path_order_and_symlinks(tmp_path: Path) -> None:
    first = script(tmp_path / "one" / "tool", "echo 1\n")
    script(tmp_path / "two" / "tool", "echo 2\n")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "tool").symlink_to(first)
    path = os.pathsep.join(str(tmp_path / d) for d in ("links", "two", "one"))
    assert host.resolve_program("tool", path) == first
    assert host.resolve_program("tool", "::" + str(tmp_path / "two")) == tmp_path / "two" / "tool"


def fake_shim(path: Path, manager_cmd: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/usr/bin/env bash\nset -e\nprogram=\"${0##*/}\"\n"
        f'exec "{manager_cmd}" exec "$program" "$@"\n'
    )
    path.chmod(0o755)
    return path


def test_unresolvable_shim_is_refused(store: Store, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    shim = fake_shim(tmp_path / "shims" / "fakepy", "/nonexistent/libexec/pyenv")
    with pytest.raises(UserError) as err:
        host.resolve_program("fakepy", str(tmp_path / "shims"))
    message = str(err.value)
    assert str(shim) in message and "pyenv" in message and "absolute path" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="shim"):
        host.capture(store, "py", [str(shim)])
    assert store.list_artifacts() == []


def test_shim_outside_shims_dir_detected_by_content(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    shim = fake_shim(tmp_path / "bin" / "ruby", "/nonexistent/bin/rbenv")
    with pytest.raises(UserError, match="rbenv shim"):
        host.resolve_program(str(shim))


def test_shim_resolved_through_its_manager(store: Store, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A pyenv-style shim is replaced by what `pyenv which NAME` says."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    real = script(tmp_path / "versions" / "9.1" / "bin" / "fakepy", 'echo "Fakepy 9.1.0"\n')
    manager = script(tmp_path / "libexec" / "pyenv",
                     f'[ "$1" = which ] && [ "$2" = fakepy ] && echo "{real}" && exit 0\n'
                     'echo "pyenv: $2: command not found" >&2; exit 127\n')
    fake_shim(tmp_path / "shims" / "fakepy", str(manager))
    fake_shim(tmp_path / "shims" / "other", str(manager))
    shims = str(tmp_path / "shims")
    assert host.resolve_program("fakepy", shims) == real
    aid = host.capture(store, "fakepy", ["fakepy"], search_path=shims)
    assert aid.split("/")[1] == "9.1.0"
    assert bin_links(store, aid) == {"fakepy": str(real)}
    with pytest.raises(UserError, match="command not found"):
        host.resolve_program("other", shims)


def test_real_pyenv_shim_resolves() -> None:
    shim = Path(os.path.expanduser("~/.pyenv/shims/python3"))
    if not shim.exists():
        need("pyenv")  # fails on CI if pyenv is there but its shim is not
        pytest.skip("no pyenv python3 shim")
    real = host.resolve_program(str(shim))
    assert "/shims/" not in str(real)
    assert os.access(real, os.X_OK) and real.is_file()
    out = subprocess.run([str(real), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("Python 3")
    assert host.resolve_program("python3", str(shim.parent)) == real


# -- the basic tools -------------------------------------------------------------

def test_basic_tools_have_no_compiler() -> None:
    assert not COMPILERS & set(host.BASIC_TOOLS)
    assert set(host.REQUIRED_TOOLS) <= set(host.BASIC_TOOLS)
    assert {"make", "sed", "sh", "tar", "grep", "awk"} <= set(host.REQUIRED_TOOLS)


def test_capture_basic_tools(store: Store) -> None:
    need("make")
    aid = host.capture_basic_tools(store)
    assert aid.startswith(f"{host.BASIC_TOOLS_NAME}/")
    links = bin_links(store, aid)
    assert {"make", "sed", "sh", "grep", "tar"} <= set(links)
    assert not COMPILERS & set(links)
    assert all(os.path.isabs(t) and os.path.isfile(t) for t in links.values())
    assert links["make"] == os.path.realpath(need("make"))
    sed = store.artifact_dir(aid) / "bin" / "sed"
    out = subprocess.run([str(sed), "s/a/b/"], input="aaa\n", capture_output=True, text=True,
                         check=True)
    assert out.stdout == "baa\n"
    assert host.capture_basic_tools(store) == aid


def test_basic_tools_are_a_fixed_list(store: Store, tmp_path: Path) -> None:
    """Another program on the system PATH (m4, perl, file) never joins posix-tools."""
    need("make")
    only = tmp_path / "tools"
    only.mkdir()
    for tool in host.REQUIRED_TOOLS:
        (only / tool).symlink_to(os.path.realpath(need(tool)))
    before = host.basic_tools_spec(store, search_path=str(only))
    for extra in ("m4", "perl", "file"):
        script(only / extra, f'echo "{extra} 1.0"\n')
    assert host.basic_tools_spec(store, search_path=str(only)) == before
    aid = host.capture_basic_tools(store, search_path=str(only))
    assert set(bin_links(store, aid)) == set(host.REQUIRED_TOOLS)
    assert not {"m4", "perl", "file"} & set(host.BASIC_TOOLS)


def test_basic_tools_missing_required_is_an_error(store: Store, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "sed").symlink_to(os.path.realpath(need("sed")))
    with pytest.raises(BuildError, match="make") as err:
        host.capture_basic_tools(store, search_path=str(partial))
    assert " sed" not in str(err.value)
    assert store.list_artifacts() == []


# -- the cache ----------------------------------------------------------------------

def counting_tool(tmp_path: Path) -> tuple[Path, Path]:
    counter = tmp_path / "runs"
    prog = script(tmp_path / "bin" / "counted", f'echo run >> "{counter}"; echo "counted 4.5"\n')
    return prog, counter


def test_cache_avoids_rerunning_version(store: Store, tmp_path: Path) -> None:
    prog, counter = counting_tool(tmp_path)
    first = host.host_spec(store, "counted", [str(prog)])
    assert counter.read_text() == "run\n"
    second = host.host_spec(store, "counted", [str(prog)])
    assert second == first
    assert counter.read_text() == "run\n"
    cached = json.loads(host.cache_path(store).read_text())
    assert cached["entries"][str(prog)]["versions"] == {"counted": "counted 4.5"}


def test_warm_cache_skips_hashing(store: Store, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a file is old enough not to be racy, its stat alone answers."""
    prog, counter = counting_tool(tmp_path)
    host.host_spec(store, "counted", [str(prog)])
    hashed: list[str] = []
    real_sha = host.sha256_file

    def spy(path: str) -> str:
        hashed.append(str(path))
        return real_sha(path)

    monkeypatch.setattr(host, "sha256_file", spy)
    host.host_spec(store, "counted", [str(prog)])
    assert hashed == [str(prog)]  # just written: racy, so re-hashed (but not re-run)
    monkeypatch.setattr(host, "RACY_NS", 0)
    hashed.clear()
    host.host_spec(store, "counted", [str(prog)])
    assert hashed == []
    assert counter.read_text() == "run\n"


def test_corrupt_cache_is_ignored(store: Store, tmp_path: Path) -> None:
    prog, counter = counting_tool(tmp_path)
    host.cache_path(store).parent.mkdir(parents=True)
    host.cache_path(store).write_text("{not json")
    spec = host.host_spec(store, "counted", [str(prog)])
    assert spec["version"] == "4.5"
    assert json.loads(host.cache_path(store).read_text())["format"] == host.CACHE_FORMAT
    host.cache_path(store).write_text('{"format": 1, "entries": {"x": 3}}')
    assert host.host_spec(store, "counted", [str(prog)]) == spec
    host.cache_path(store).write_text("[" * 100_000)  # deeper than json's recursion
    assert host.host_spec(store, "counted", [str(prog)]) == spec


def test_script_run_by_a_managed_interpreter_is_not_a_shim(tmp_path: Path) -> None:
    """pip under ~/.pyenv/versions names pyenv in its #! line but is a real program."""
    pip = tmp_path / ".pyenv" / "versions" / "3.11.7" / "bin" / "pip"
    pip.parent.mkdir(parents=True)
    pip.write_text("#!/root/.pyenv/versions/3.11.7/bin/python3.11\nimport sys\nsys.exit(0)\n")
    pip.chmod(0o755)
    assert host.resolve_program(str(pip)) == pip


def test_asdf_style_shim_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    shim = tmp_path / "bin" / "node"
    script(shim, '# asdf-plugin: nodejs 20.1.0\nexec asdf exec "node" "$@"\n')
    with pytest.raises(UserError, match="asdf shim and asdf was not found"):
        host.resolve_program(str(shim))
