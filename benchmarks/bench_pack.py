"""`hdenv pack` of a ~50 MB profile: time against `tar | zstd`, image size against `du`.

The profile is bench_cache.py's: N artifacts of real files from this machine
(shared libraries, programs, headers, docs), about 50 MB. In the same run,
best of R rounds:

- pack to an OCI layout (uncompressed layers, one per artifact), to a docker
  archive, and to SquashFS (mksquashfs, gzip)  vs  `tar -c | zstd -3` of the
  same artifact trees (the cheapest way to carry a closure);
- the size of each image  vs  `du -sb` of the closure (ratio above 1: the
  image's overhead; the OCI layout's layers are uncompressed, SquashFS's are not).
  The OCI row is split into the layer of host files (the C library and every
  system library the closure's programs load: real binaries from /usr pull
  in many) and the rest (the closure's layers, the profile, the specs).

Time ratios above 1 mean packing is slower than the baseline.
Run: .venv/bin/python benchmarks/bench_pack.py [--mb 50] [--artifacts 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cache import best, make_profile, tar_zstd  # noqa: E402

from hdenv.containers.pack import PackOptions, pack  # noqa: E402
from hdenv.store.layout import Store  # noqa: E402


def du(path: Path) -> int:
    """Bytes of `path` as `du -sb` counts them (apparent sizes)."""
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def host_layer(layout: Path) -> int:
    """Bytes of the layer of host files (system libraries the closure's programs load)."""
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return sum(d["size"] for d in manifest["layers"]
               if d.get("annotations", {}).get("dev.hdenv.content") == "system")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--artifacts", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    try:
        run(tmp, args.mb, args.artifacts, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, mb: int, count: int, rounds: int) -> None:
    store = Store(tmp / "store").ensure()
    phash, ids = make_profile(store, mb, count)
    closure = sum(du(store.artifact_dir(a)) for a in ids)
    print(f"profile {phash}: {count} artifacts, du {closure / 1e6:.1f} MB")
    state = {"n": 0}

    def fresh() -> Path:
        state["n"] += 1
        return tmp / f"out{state['n']}"

    archive = tmp / "baseline.tar.zst"
    t_base = best(rounds, lambda: None, lambda: tar_zstd(store, ids, archive))
    rows = [("tar | zstd -3 (baseline)", t_base, du(archive))]
    formats = ["oci", "docker-archive"] + (["squashfs"] if shutil.which("mksquashfs") else [])
    for fmt in formats:
        target = {"path": fresh()}

        def new(target: dict[str, Path] = target) -> None:
            target["path"] = fresh()

        def go(fmt: str = fmt, target: dict[str, Path] = target) -> None:
            pack(store, phash, PackOptions(format=fmt, output=target["path"]))

        t = best(rounds, new, go)
        rows.append((f"pack --format {fmt}", t, du(target["path"])))
        if fmt == "oci":
            host = host_layer(target["path"])
            rows.append(("  of which host files", 0.0, host))
            rows.append(("  of which the rest", 0.0, du(target["path"]) - host))
    print(f"{'':28} {'time':>8} {'x tar|zstd':>10} {'size MB':>8} {'x du':>6}")
    for label, t, size in rows:
        timing = f"{t:7.2f}s {t / t_base:10.2f}" if t else f"{'':8} {'':10}"
        print(f"{label:28} {timing} {size / 1e6:8.1f} {size / closure:6.2f}")
    if os.environ.get("BENCH_VERBOSE"):
        print(f"closure du: {closure} bytes")


if __name__ == "__main__":
    main()
