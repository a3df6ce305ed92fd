"""Cache push and pull of a ~50 MB profile against `tar | zstd` plus a plain transfer.

The profile: N artifacts made of real files from this machine (shared
libraries and programs from /usr/lib and /usr/bin, headers and docs from
/usr/include and /usr/share), about 50 MB in all. Each contender runs on the
same trees in the same process, best of R runs:

- push to a directory   vs  `tar -c | zstd -3` of the artifact trees + `cp` of the archive;
- push to an OCI registry  vs  `tar | zstd` + one HTTP upload of the archive (POST+PUT
  to the same registry, with urllib);
- pull from HTTP (a directory served by http.server) into an empty store under a
  shorter root (so everything is relocated)  vs  one HTTP GET of the `tar | zstd`
  archive + `zstd -d | tar -x`;
- pull from the OCI registry  vs  the same GET from the registry + `zstd -d | tar -x`.

Ratios above 1 mean hdenv is slower than the baseline (goal: at most 1.5).
Run: .venv/bin/python benchmarks/bench_cache.py [--mb 50] [--artifacts 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import http_server, registry  # noqa: E402

from hdenv.exchange.backends import open_cache  # noqa: E402
from hdenv.exchange.push import push  # noqa: E402
from hdenv.exchange.signing import SecretKey  # noqa: E402
from hdenv.exchange.substitute import Substituter  # noqa: E402
from hdenv.exchange.transfer import NullMeter  # noqa: E402
from hdenv.profile.profiles import create_profile, profile_spec  # noqa: E402
from hdenv.store.artifacts import install_artifact  # noqa: E402
from hdenv.store.layout import Store  # noqa: E402

SOURCES = ["/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/include", "/usr/share/doc"]


def real_files(limit: int) -> Iterator[Path]:
    """Regular files from the system, in a stable order, until `limit` bytes."""
    total = 0
    for top in SOURCES:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                try:
                    if path.is_symlink() or not path.is_file():
                        continue
                    size = path.stat().st_size
                except OSError:
                    continue
                if size > 8 << 20 or not os.access(path, os.R_OK):
                    continue
                yield path
                total += size
                if total >= limit:
                    return


def make_profile(store: Store, mb: int, count: int) -> tuple[str, list[str]]:
    files = list(real_files(mb << 20))
    ids = []
    for i in range(count):
        mine = files[i::count]

        def populate(prefix: Path, _fd: int, _pfd: int, mine: list[Path] = mine,
                     i: int = i) -> None:
            for src in mine:
                dest = prefix / src.relative_to("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            # text that names the prefix, as .pc files and scripts do
            (prefix / "lib" / "pkgconfig").mkdir(parents=True, exist_ok=True)
            (prefix / "lib" / "pkgconfig" / f"p{i}.pc").write_text(f"prefix={prefix}\n")

        spec = {"kind": "build", "name": f"bench{i}", "version": "1", "deps": [],
                "script": f"bench {mb} {count}"}
        aid, _ = install_artifact(store, spec, populate, runtime_deps=[])
        ids.append(aid)
    spec = profile_spec(ids, {}, None)
    create_profile(store, spec)
    from hdenv.profile.profiles import profile_hash

    return profile_hash(spec), ids


def best(rounds: int, setup: Callable[[], object], run: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        setup()
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def tar_zstd(store: Store, ids: list[str], out: Path) -> None:
    rels = [str(Path("artifacts") / a) for a in ids]
    with open(out, "wb") as f:
        tar = subprocess.Popen(["tar", "-C", str(store.root), "-cf", "-", *rels],
                               stdout=subprocess.PIPE)
        subprocess.run(["zstd", "-3", "-q", "-c"], stdin=tar.stdout, stdout=f, check=True)
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait() == 0


def untar(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    z = subprocess.Popen(["zstd", "-d", "-q", "-c", str(archive)], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-C", str(dest), "-xf", "-"], stdin=z.stdout, check=True)
    assert z.stdout is not None
    z.stdout.close()
    assert z.wait() == 0


def oci_upload(reg: str, repo: str, archive: Path) -> None:
    data_digest = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    base = f"http://{reg}/v2/{repo}"
    req = urllib.request.Request(f"{base}/blobs/uploads/", data=b"", method="POST")
    with urllib.request.urlopen(req) as resp:
        location = resp.headers["Location"]
    sep = "&" if "?" in location else "?"
    with open(archive, "rb") as f:
        req = urllib.request.Request(f"{location}{sep}digest={data_digest}", data=f,
                                     method="PUT", headers={
                                         "Content-Length": str(archive.stat().st_size),
                                         "Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req).close()


def http_get(url: str, out: Path) -> None:
    with urllib.request.urlopen(url) as resp, open(out, "wb") as f:
        shutil.copyfileobj(resp, f, 1 << 20)


JOBS = {"n": 2}  # transfers in flight for a pull (`--jobs`)
GOALS = {"push to directory": 1.2, "push to OCI registry": 1.2, "pull from HTTP": 1.3,
         "pull from OCI registry": 1.3}  # issue 25


def pull_round(label: str, url: str, baseline_url: str, ids: list[str], key: SecretKey,
               fresh: Callable[[str], Path], rounds: int) -> tuple[str, float, float]:
    """Pull every artifact into a fresh store vs one GET of the baseline archive + untar."""
    dest = {"store": Store(fresh("s"))}

    def new_store() -> None:
        dest["store"] = Store(fresh("s")).ensure()

    def pull() -> None:
        sub = Substituter(dest["store"], [open_cache(url)], [key.public()])
        got = sub.fetch_many(ids, lambda _aid: [], JOBS["n"], lambda *_a: NullMeter())
        assert all(not isinstance(g, str) for g in got.values()), got

    def base_pull() -> None:
        got = fresh("get")
        http_get(baseline_url, got)
        untar(got, fresh("tree"))

    return label, best(rounds, new_store, pull), best(rounds, lambda: None, base_pull)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--artifacts", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2,
                        help="artifacts packed / transfers in flight (hdenv's jobs; default 2)")
    args = parser.parse_args()
    JOBS["n"] = args.jobs
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        run(tmp, args.mb, args.artifacts, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, mb: int, count: int, rounds: int) -> None:
    store = Store(tmp / "store-a-with-a-longer-root").ensure()
    phash, ids = make_profile(store, mb, count)
    size = sum(os.path.getsize(os.path.join(d, f)) for a in ids
               for d, _, fs in os.walk(store.artifact_dir(a)) for f in fs)
    print(f"profile {phash}: {count} artifacts, {size / 1e6:.1f} MB of real files")
    key = SecretKey.generate("bench")
    quiet = print if os.environ.get("BENCH_VERBOSE") else (lambda _m: None)
    results: list[tuple[str, float, float]] = []
    with registry(tmp / "registry") as reg, http_server(tmp, tmp / "http.log") as http:
        state = {"n": 0}

        def fresh(prefix: str) -> Path:
            state["n"] += 1
            return tmp / f"{prefix}{state['n']}"

        # push to a directory
        target = {"dir": tmp / "x"}

        def new_dir() -> None:
            target["dir"] = fresh("dircache")

        t_push = best(rounds, new_dir, lambda: push(store, [phash], open_cache(str(target["dir"])),
                                                      key, quiet, jobs=JOBS["n"]))
        archive = tmp / "baseline.tar.zst"

        def base_push() -> None:
            tar_zstd(store, ids, archive)
            shutil.copyfile(archive, fresh("copy"))

        results.append(("push to directory", t_push, best(rounds, lambda: None, base_push)))

        # push to OCI: a new repository each round, so nothing is skipped
        repo = {"name": "x"}

        def new_repo() -> None:
            repo["name"] = f"bench/r{fresh('r').name}"

        t_oci = best(rounds, new_repo, lambda: push(
            store, [phash], open_cache(f"oci://{reg}/{repo['name']}"), key, quiet,
            jobs=JOBS["n"]))
        pushed_repo = repo["name"]  # the baseline rounds below each make a repository of their own

        def base_oci() -> None:
            tar_zstd(store, ids, archive)
            oci_upload(reg, repo["name"], archive)

        results.append(("push to OCI registry", t_oci, best(rounds, new_repo, base_oci)))

        # pull: into stores under a shorter root, so every text file is relocated
        served = target["dir"]
        shutil.move(str(served), str(tmp / "served"))
        tar_zstd(store, ids, tmp / "served.tar.zst")
        oci_blob = f"http://{reg}/v2/{repo['name']}/blobs/sha256:" + hashlib.sha256(
            archive.read_bytes()).hexdigest()
        results.append(pull_round("pull from HTTP", f"{http}served/", f"{http}served.tar.zst",
                                  ids, key, fresh, rounds))
        results.append(pull_round("pull from OCI registry", f"oci://{reg}/{pushed_repo}",
                                  oci_blob, ids, key, fresh, rounds))
    print(f"{JOBS['n']} artifacts packed or downloaded at once")
    print(f"{'':28} {'hdenv':>8} {'baseline':>9} {'ratio':>6} {'goal':>6}")
    for label, ours, base in results:
        verdict = "OK" if ours / base <= GOALS[label] else "MISSED"
        print(f"{label:28} {ours:7.2f}s {base:8.2f}s {ours / base:6.2f} {GOALS[label]:>6}"
              f" {verdict}")


if __name__ == "__main__":
    main()
