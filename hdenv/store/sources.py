"""The source store: archives by sha256, git commits, local directories, mirrors.

A source is identified by its content only (`sha256:HEX` or `git:COMMIT`);
URLs and mirrors are hints for where to find the bytes, never part of a key.

Layout under `<store>/src/`:

    sha256/HEX          the archive (read-only); present means verified
    names/HEX           its original file name, for `hdenv mirror`
    git/cache.git       one bare repository holding every fetched commit
                        (kept alive by refs/hdenv/keep/COMMIT)

Downloads stream into `<store>/tmp/`, are hashed while streaming and land by
an atomic rename only when the hash matches, so a half-finished or wrong
download never looks present and concurrent fetches of one key are harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import BuildError, UserError
from ..oserrors import describe as describe_os_error
from ..oserrors import naming
from . import archive, srcstat
from .fsutil import file_lock
from .hashing import CHUNK, sha256_file
from .layout import Store
from .tmpdirs import temp_file

TIMEOUT = 20.0
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX40 = re.compile(r"[0-9a-f]{40}")
SKIP_DIRS = frozenset({".git", ".hg", ".svn"})
DECL_KEYS = ("url", "sha256", "path", "git", "commit", "strip", "target", "filename", "unpack")


@dataclass(frozen=True)
class SourceDecl:
    """One entry of a package's `sources = [...]` as written in the stack file."""

    url: str | None = None
    sha256: str | None = None
    path: str | None = None
    git: str | None = None
    commit: str | None = None
    strip: int = 0
    target: str = ""
    filename: str | None = None
    unpack: bool = True

    @classmethod
    def from_toml(cls, table: dict[str, Any], *, file: str, line: int) -> SourceDecl:
        """Validate a TOML table; every problem is a one-line UserError at FILE:LINE."""

        def fail(msg: str) -> UserError:
            return UserError(f"source: {msg}", file=file, line=line)

        if not isinstance(table, dict):
            raise fail(f"expected a table like {{ url = ..., sha256 = ... }}, got {table!r}")
        unknown = sorted(set(table) - set(DECL_KEYS))
        if unknown:
            raise fail(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(DECL_KEYS)}")
        for key in ("url", "sha256", "path", "git", "commit", "target", "filename"):
            if key in table and not isinstance(table[key], str):
                raise fail(f"{key} must be a string, got {table[key]!r}")
        strip = table.get("strip", 0)
        if isinstance(strip, bool) or not isinstance(strip, int) or strip < 0:
            raise fail(f"strip must be a whole number >= 0, got {strip!r}")
        kinds = [k for k in ("url", "path", "git") if k in table]
        if len(kinds) > 1:
            raise fail(f"use only one of url, path, git (got {', '.join(kinds)})")
        sha = table.get("sha256")
        if sha is not None:
            sha = sha.lower()
            if not HEX64.fullmatch(sha):
                raise fail(f"sha256 must be 64 hex digits, got {table['sha256']!r}")
        commit = table.get("commit")
        if commit is not None:
            commit = commit.lower()
            if not HEX40.fullmatch(commit):
                raise fail(f"commit must be a full 40-hex-digit commit, got {table['commit']!r}")
        if "url" in table and sha is None:
            raise fail("url needs sha256 = \"...\" (the hash is the source's identity)")
        if "git" in table and commit is None:
            raise fail("git needs commit = \"<40 hex>\" (a branch or tag can move)")
        if commit is not None and "git" not in table:
            raise fail("commit is only valid together with git = \"<repository URL>\"")
        if sha is not None and kinds and kinds[0] != "url":
            raise fail(f"sha256 does not go with {kinds[0]}")
        if not kinds and sha is None:
            raise fail("needs url + sha256, sha256 alone, path, or git + commit")
        target = table.get("target", "")
        if target.startswith("/") or ".." in target.split("/"):
            raise fail(f"target must be a relative path inside the build directory, got {target!r}")
        filename = table.get("filename")
        if filename is not None and (not filename or "/" in filename or filename in (".", "..")):
            raise fail(f"filename must be a plain file name, got {filename!r}")
        unpack = table.get("unpack", True)
        if not isinstance(unpack, bool):
            raise fail(f"unpack must be true or false, got {unpack!r}")
        if not unpack:
            if "git" in table:
                raise fail("unpack = false keeps an archive as a file; it does not go with git")
            if strip:
                raise fail("strip does not go with unpack = false (nothing is unpacked)")
            if filename is None and not (table.get("url") or table.get("path")):
                raise fail("unpack = false with sha256 alone needs filename = \"...\"")
        return cls(url=table.get("url"), sha256=sha, path=table.get("path"), git=table.get("git"),
                   commit=commit, strip=strip, target=target, filename=filename, unpack=unpack)

    def kept_name(self) -> str | None:
        """The file name an `unpack = false` source gets in the build directory.

        It goes into the spec: a wheel's name is part of what pip installs, so
        it must not come from a URL hint that never enters a hash.
        """
        if self.unpack:
            return self.filename
        where = self.url or self.path or ""
        return self.filename or _basename(where) or None

    def key(self) -> str | None:
        """The key when the declaration names it; None for a local path."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.commit:
            return f"git:{self.commit}"
        return None


def parse_key(key: str) -> tuple[str, str]:
    """Split `sha256:HEX` / `git:COMMIT` into (kind, value); UserError otherwise."""
    kind, _, value = key.partition(":")
    if kind == "sha256" and HEX64.fullmatch(value):
        return kind, value
    if kind == "git" and HEX40.fullmatch(value):
        return kind, value
    raise UserError(f"not a source key (sha256:<64 hex> or git:<40 hex>): {key!r}")


class _Mismatch(Exception):
    """A location delivered bytes with the wrong hash (nothing was stored)."""


class _HashingWriter:
    """A write-only file that hashes what passes through, so tar output is
    hashed in the same pass that writes it."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return self.f.write(data)


class SourceStore:
    def __init__(self, store: Store, mirrors: Sequence[str] = (), *,
                 log: Callable[[str], None] | None = None, keys_only: bool = False):
        self.store = store
        # `build --dry-run`: local sources are hashed for their keys, never stored
        self.keys_only = keys_only
        self.mirrors = list(mirrors)
        self.log = log or (lambda _msg: None)
        self.sha_dir = store.src / "sha256"
        self.names_dir = store.src / "names"
        self.git_dir = store.src / "git" / "cache.git"

    # -- presence ---------------------------------------------------------
    def path(self, key: str) -> Path:
        """Where the source lives: the archive file, or the git cache for git keys."""
        kind, value = parse_key(key)
        return self.sha_dir / value if kind == "sha256" else self.git_dir

    def has(self, key: str) -> bool:
        kind, value = parse_key(key)
        if kind == "sha256":
            return (self.sha_dir / value).is_file()
        return self._git_has(value)

    def name_of(self, key: str) -> str | None:
        """The original file name a stored archive arrived under, if known."""
        _, value = parse_key(key)
        try:
            return (self.names_dir / value).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    # -- keys -------------------------------------------------------------
    def key_for(self, decl: SourceDecl, base_dir: Path) -> str:
        """The key of a declared source; local paths are stored so the key resolves
        from the store alone (a spec can be rebuilt without the stack's directory)."""
        key = decl.key()
        if key is not None:
            return key
        if decl.path is None:
            raise UserError("source has neither sha256, git commit nor path")
        local = Path(base_dir) / decl.path
        if local.is_dir():
            if not decl.unpack:
                raise UserError(f"source path {str(local)!r} is a directory: unpack = false "
                                "keeps a single file")
            return self._store_dir(local)
        if local.is_file():
            if self.keys_only:
                return f"sha256:{sha256_file(local)}"
            return f"sha256:{self._store_location(str(local), None, local.name, private=True)}"
        raise UserError(f"source path {str(local)!r} does not exist")

    def _store_dir(self, root: Path) -> str:
        """Store a deterministic, uncompressed tar of a directory and return its key.

        Only names, contents, the executable bit and symlink targets count:
        mtimes, owners and other permission bits are normalised, and VCS
        metadata (.git, .hg, .svn) is left out, so `git status` or `touch`
        does not trigger a rebuild but editing a file does. Uncompressed,
        because gzip output may differ between zlib versions.
        """
        if self.keys_only:
            with open(os.devnull, "wb") as sink:
                return f"sha256:{_tar_dir(root, sink)}"
        with self._tempfile() as (tmp, f):  # tmp/<uid>/ made and checked (tmpdirs)
            hex_ = _tar_dir(root, f)
            f.close()
            self._land(tmp, hex_, f"{root.name}.tar", private=True)
        return f"sha256:{hex_}"

    # -- getting sources --------------------------------------------------
    def ensure(self, key: str, *, urls: Sequence[str] = (), name: str | None = None,
               git_url: str | None = None) -> Path:
        """Make the source present: own store, upstream stores, each mirror (local
        directories first; `<mirror>/NAME` and `<mirror>/sha256/HEX`), then the URLs.
        BuildError lists every place tried."""
        kind, value = parse_key(key)
        if kind == "git":
            return self._ensure_git(value, git_url)
        dest = self.sha_dir / value
        if self._intact(key, dest):
            return dest
        # one download per source: variants of a matrix building at once (or other
        # runs) wait for the first, then find the source stored
        with file_lock(self.store.lock_path(f"src-{value}")):
            if self._intact(key, dest):
                return dest
            return self._fetch_locked(key, value, dest, urls, name)

    def _intact(self, key: str, dest: Path) -> bool:
        """Stored and still what its name says; a damaged copy is removed."""
        if not dest.is_file():
            return False
        if srcstat.intact(self.store.src, dest.name):
            return True
        self.log(f"stored source {key} is damaged (its bytes no longer hash to its name):"
                 " removed, fetching it again")
        srcstat.discard(self.store.src, dest.name)
        return False

    def _fetch_locked(self, key: str, value: str, dest: Path, urls: Sequence[str],
                      name: str | None) -> Path:
        name = name or next((_basename(u) for u in urls if _basename(u)), None)
        tried: list[str] = []
        for loc in self._locations(value, urls, name):
            try:
                self.log(f"fetching {loc}")
                self._store_location(loc, value, name)
                return dest
            except _Mismatch as e:
                tried.append(f"{loc}: {e}")
                self.log(f"  failed: {loc}: {e}")  # each failed attempt: one line
            except (OSError, urllib.error.URLError, ValueError) as e:
                tried.append(f"{loc}: {_reason(e)}")
                self.log(f"  failed: {loc}: {_reason(e)}")
        where = "; ".join(tried) if tried else "no URL or mirror configured"
        raise BuildError(f"could not get {key}{f' ({name})' if name else ''}: tried {where}")

    def _locations(self, hex_: str, urls: Sequence[str], name: str | None) -> list[str]:
        # an upstream store that has the archive: a copy from a local disk, checked like any
        upstream = [str(u.src / "sha256" / hex_) for u in self.store.upstreams
                    if (u.src / "sha256" / hex_).is_file()]
        # mirrors before the URL: a site keeps one so that an offline cluster never
        # waits on upstream servers; local-directory mirrors before URL mirrors
        mirrors = sorted(self.mirrors, key=lambda m: not _is_local(m))
        locs = list(upstream)
        for mirror in mirrors:
            if name:
                locs.append(_join(mirror, name))
            locs.append(_join(mirror, f"sha256/{hex_}"))
        return [*locs, *urls]

    def fetch(self, url: str, sha256: str | None = None) -> str:
        """`hdenv fetch URL [--sha256 HEX]`: store one file, return its key."""
        expected = None
        if sha256 is not None:
            expected = sha256.lower().removeprefix("sha256:")
            if not HEX64.fullmatch(expected):
                raise UserError(f"--sha256 must be 64 hex digits, got {sha256!r}")
            if (self.sha_dir / expected).is_file():
                return f"sha256:{expected}"
        if _is_local(url) and not _local_path(url).is_file():
            raise UserError(f"no such file: {url}")
        try:
            hex_ = self._store_location(url, expected, _basename(url) or None)
        except _Mismatch as e:
            raise BuildError(f"{url}: {e}") from None
        except OSError as e:
            described = describe_os_error(e)
            if described is not None and e.filename is not None:  # the store's problem
                raise BuildError(f"could not fetch {url}: {described[0]}") from None
            raise BuildError(f"could not fetch {url}: {_reason(e)}") from None
        except (urllib.error.URLError, ValueError) as e:
            raise BuildError(f"could not fetch {url}: {_reason(e)}") from None
        return f"sha256:{hex_}"

    def _store_location(self, loc: str, expected: str | None, name: str | None, *,
                        private: bool = False) -> str:
        """Stream one location into tmp/, hashing as it goes; land it if it matches."""
        with _open_location(loc) as src:
            return self._store_stream(src, expected, name, private=private)

    def add_stream(self, src: IO[bytes], sha256: str, name: str | None) -> str:
        """Store the bytes of an open file (a bundle member) that must hash to `sha256`.

        Returns the key; BuildError (nothing stored) when the bytes do not match.
        """
        try:
            return f"sha256:{self._store_stream(src, sha256, name)}"
        except _Mismatch as e:
            raise BuildError(f"{name or sha256}: {e}") from None

    def _store_stream(self, src: IO[bytes], expected: str | None, name: str | None, *,
                      private: bool = False) -> str:
        with self._tempfile() as (tmp, f):
            h = hashlib.sha256()
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                n = src.readinto(buf)  # type: ignore[attr-defined]
                if not n:
                    break
                h.update(view[:n])
                f.write(view[:n])
            f.close()
            got = h.hexdigest()
            if expected is not None and got != expected:
                raise _Mismatch(f"hash mismatch: expected sha256:{expected}, got sha256:{got}")
            self._land(tmp, got, name, private=private)
        return got

    @contextlib.contextmanager
    def _tempfile(self) -> Iterator[tuple[Path, IO[bytes]]]:
        """A temp file in the store's tmp/ (same filesystem as src/), removed unless landed."""
        fd, tmp = temp_file(self.store, "src-", ".part")
        try:
            with naming(tmp), os.fdopen(fd, "wb") as f:  # a full disk names where it filled
                yield tmp, f
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _land(self, tmp: Path, hex_: str, name: str | None, *, private: bool = False) -> None:
        """Move a checked file to src/sha256/HEX. A local file or directory (`path =`)
        may be anything its owner could read, so it stays owner-readable only (and the
        group's in a shared store); a download was public anyway."""
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, (0o440 if self.store.shared else 0o400) if private else 0o444)
        # src/ and src/sha256/ from the store root through descriptors (storedirs): a
        # symlink a member planted as either is refused, nothing lands in its target
        with self.store.opened("src", "sha256") as sha_fd:
            os.replace(tmp, hex_, dst_dir_fd=sha_fd)
        srcstat.record(self.store.src, hex_)
        if name and not (self.names_dir / hex_).exists():
            self.store.write_file(("src", "names"), hex_, name.encode("utf-8") + b"\n")

    # -- unpacking --------------------------------------------------------
    def unpack(self, key: str, dest: Path, *, strip: int = 0, filename: str | None = None,
               keep: bool = False) -> None:
        """Unpack a present source into `dest`. Git trees go through `git archive`
        and the same safe unpacker, so `strip` means the same for both.

        `keep` (a source's `unpack = false`) copies the archive as the file
        `dest/filename` instead: a wheel is installed by pip, not unzipped.
        """
        kind, value = parse_key(key)
        if not self.has(key):
            raise BuildError(f"source {key} is not in the store (fetch it first)")
        if keep and kind == "sha256":
            archive.keep_file(self.sha_dir / value, dest, filename or self.name_of(key) or value)
            return
        if kind == "sha256":
            archive.unpack(self.sha_dir / value, dest, strip=strip,
                           filename=filename or self.name_of(key) or value)
            return
        with self._tempfile() as (tmp, f):
            self._git("archive", "--format=tar", value, stdout=f)
            f.close()
            archive.unpack(tmp, dest, strip=strip)

    # -- git --------------------------------------------------------------
    def _git(self, *args: str, stdout: IO[bytes] | None = None, check: bool = True) -> int:
        cmd = ["git", f"--git-dir={self.git_dir}", *args]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        proc = subprocess.run(cmd, stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise BuildError(f"git {args[0]} failed: {err[-1] if err else proc.returncode}")
        return proc.returncode

    def _git_has(self, commit: str) -> bool:
        if not (self.git_dir / "HEAD").is_file() or shutil.which("git") is None:
            return False
        return self._git("cat-file", "-e", f"{commit}^{{commit}}", check=False) == 0

    def _ensure_git(self, commit: str, git_url: str | None) -> Path:
        if self._git_has(commit):
            return self.git_dir
        if shutil.which("git") is None:
            raise BuildError(f"git:{commit} needs git, which is not on PATH")
        if not git_url:
            raise BuildError(f"git:{commit} is not in the store and no repository URL is known")
        if git_url.startswith("-"):
            raise UserError(f"refusing git repository URL {git_url!r}: it looks like an option")
        with file_lock(self.store.lock_path("src-git")):
            if not (self.git_dir / "HEAD").is_file():
                os.close(self.store.dir_fd("src", "git"))  # made through descriptors
                subprocess.run(["git", "init", "-q", "--bare", str(self.git_dir)], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if not self._git_has(commit):
                self.log(f"fetching {git_url} {commit}")
                self._git_fetch(commit, git_url)
            if not self._git_has(commit):
                raise BuildError(f"commit {commit} not found in {git_url}")
            self._git("update-ref", f"refs/hdenv/keep/{commit}", commit)
        return self.git_dir

    def _git_fetch(self, commit: str, git_url: str) -> None:
        """Fetch just the commit when the server allows it, else all branches and tags."""
        if self._git("fetch", "-q", "--no-tags", "--", git_url, commit, check=False) == 0:
            return
        space = hashlib.sha256(git_url.encode()).hexdigest()[:16]
        self._git("fetch", "-q", "--no-tags", "--", git_url,
                  f"+refs/heads/*:refs/hdenv/remotes/{space}/heads/*",
                  f"+refs/tags/*:refs/hdenv/remotes/{space}/tags/*")

    # -- mirrors ----------------------------------------------------------
    def write_mirror(self, dest: Path) -> int:
        """`hdenv mirror DIR`: write every stored archive as DIR/sha256/HEX and, when
        its name is known, DIR/NAME; returns how many archives were written."""
        dest = Path(dest)
        (dest / "sha256").mkdir(parents=True, exist_ok=True)
        count = 0
        if not self.sha_dir.is_dir():
            return 0
        for hex_ in sorted(os.listdir(self.sha_dir)):
            if not HEX64.fullmatch(hex_):
                continue
            src = self.sha_dir / hex_
            _copy_if_different(src, dest / "sha256" / hex_)
            name = self.name_of(f"sha256:{hex_}")
            if name and "/" not in name and name not in (".", "..", "sha256"):
                _copy_if_different(src, dest / name)
            count += 1
        return count


# -- helpers ----------------------------------------------------------------


def _tar_dir(root: Path, f: IO[bytes]) -> str:
    """Write the deterministic tar of `root` to `f`; its sha256."""
    writer = _HashingWriter(f)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for rel, full in _walk_sorted(root):
            info = _tar_info(root, rel, full)
            if info.isreg():
                with open(full, "rb") as data:
                    tf.addfile(info, data)
            else:
                tf.addfile(info)
    return writer.h.hexdigest()


def _walk_sorted(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, full path) of everything under root, in sorted order
    (depth first, without recursion), leaving out VCS metadata directories."""
    stack: list[Iterator[str]] = [iter(sorted(os.listdir(root)))]
    dirs: list[tuple[Path, str]] = [(root, "")]
    while stack:
        name = next(stack[-1], None)
        if name is None:
            stack.pop()
            dirs.pop()
            continue
        here, rel = dirs[-1]
        full, child_rel = here / name, f"{rel}{name}"
        is_dir = full.is_dir() and not full.is_symlink()
        if is_dir and name in SKIP_DIRS:
            continue
        yield child_rel, full
        if is_dir:
            stack.append(iter(sorted(os.listdir(full))))
            dirs.append((full, child_rel + "/"))


def _tar_info(root: Path, rel: str, full: Path) -> tarfile.TarInfo:
    st = os.lstat(full)
    info = tarfile.TarInfo(rel)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(full)
        inside = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if target.startswith("/") or inside == ".." or inside.startswith("../"):
            raise UserError(f"source directory {root}: symlink {rel} -> {target} leaves the tree")
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, target
        return info
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"source directory {root}: {rel} is not a file, directory or symlink")
    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    info.size = st.st_size
    return info


def _is_local(loc: str) -> bool:
    scheme = urllib.parse.urlparse(loc).scheme
    return scheme in ("", "file")


def _local_path(loc: str) -> Path:
    if loc.startswith("file:"):
        from urllib.request import url2pathname  # see _open_location

        return Path(url2pathname(urllib.parse.urlparse(loc).path))
    return Path(loc)


@contextlib.contextmanager
def _open_location(loc: str) -> Iterator[IO[bytes]]:
    if _is_local(loc):
        with open(_local_path(loc), "rb", buffering=0) as f:
            yield f
        return
    # here, not at the top: urllib.request (with http.client, email and ssl) was ~25 ms
    # of every build's start, and a build whose sources are all in the store, like
    # any no-op build, never downloads
    import urllib.request

    req = urllib.request.Request(loc, headers={"User-Agent": "hdenv"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        yield resp


def _join(mirror: str, rel: str) -> str:
    if _is_local(mirror) and not mirror.startswith("file:"):
        return str(Path(mirror) / rel)
    return mirror.rstrip("/") + "/" + urllib.parse.quote(rel)


def _basename(url: str) -> str:
    path = urllib.parse.urlparse(url).path if not _is_local(url) or url.startswith("file:") else url
    return urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _copy_if_different(src: Path, dst: Path) -> None:
    """Copy atomically unless `dst` already holds the same bytes (`src` is named by its hash)."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and sha256_file(dst) == src.name:
        return
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            shutil.copyfileobj(f, out, CHUNK)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_local_source(local: Path) -> None:
    """Raise the UserError that storing the local source `local` would raise, writing nothing.

    `hdenv build` calls this for every `path` source before it touches the
    store, so a missing directory or a symlink leaving it is reported while
    the store is still untouched.
    """
    if local.is_dir():
        for rel, full in _walk_sorted(local):
            _tar_info(local, rel, full)
    elif not local.is_file():
        raise UserError(f"source path {str(local)!r} does not exist")
