"""Profiles for the shell tests, made two ways.

`build_profiles` builds real ones with `hdenv build` from a generated stack
file; the integration tests use it. `make_profile` writes the store contract
(`profiles/HASH/` with `.hdenv/profile.json`, `names/NAME/current`) directly,
for fast unit tests of the code generators that need no build.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

HOSTILE = "'\";&&e-$ èрт🚒♞中片-j `echo pwned` !x \\back"
# A store root with spaces, quotes, `$` and braces in it.
AWKWARD_DIR = "my store 'q' \"dq\" $HOME {x}"


def fake_hash(seed: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % 32] for b in digest[:32])


def make_profile(store: Path, name: str | None, *, env: dict[str, str] | None = None,
                 family: str | None = None, seed: str | None = None,
                 program: str | None = None) -> str:
    """Create a profile (and point `name` at it); return its hash."""
    hash_ = fake_hash(seed or name or "anon")
    prefix = store / "profiles" / hash_
    (prefix / "bin").mkdir(parents=True)
    (prefix / "share" / "man" / "man1").mkdir(parents=True)
    (prefix / "lib" / "pkgconfig").mkdir(parents=True)
    prog = prefix / "bin" / (program or f"hello-{name or hash_[:6]}")
    prog.write_text(f"#!/bin/sh\necho hello from {hash_}\n")
    prog.chmod(0o755)
    (prefix / "share" / "man" / "man1" / f"{prog.name}.1").write_text(".TH HELLO 1\n")
    (prefix / "lib" / "pkgconfig" / "hello.pc").write_text(
        f"prefix={prefix}\nName: hello\nVersion: 1\nDescription: test\n")
    meta: dict[str, object] = {"hash": hash_, "artifacts": [], "family": family,
            "env": {k: v.replace("@@HDENV_PROFILE@@", str(prefix)) for k, v in (env or {}).items()}}
    (prefix / ".hdenv").mkdir()
    (prefix / ".hdenv" / "profile.json").write_text(json.dumps(meta))
    if name is not None:
        point_name(store, name, hash_)
    return hash_


def point_name(store: Path, name: str, hash_: str) -> None:
    """A new generation N of `name` (`names/NAME/N -> ../../profiles/HASH`), made current."""
    gen_dir = store / "names" / name
    gen_dir.mkdir(parents=True, exist_ok=True)
    number = max((int(e) for e in os.listdir(gen_dir) if e.isdigit()), default=0) + 1
    (gen_dir / str(number)).symlink_to(f"../../profiles/{hash_}")
    link = gen_dir / "current"
    if os.path.lexists(link):
        link.unlink()
    link.symlink_to(str(number))


def _toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are a subset TOML accepts."""
    return json.dumps(value, ensure_ascii=False)


def stack_text(profiles: dict[str, dict[str, object]]) -> str:
    """A stack with one tiny package per profile: bin/hello-NAME, a man page, a .pc file."""
    parts = []
    for name in profiles:
        parts.append(f"""
[packages.pkg-{name}]
version = "1"
script = '''
mkdir -p "$PREFIX/bin" "$PREFIX/share/man/man1" "$PREFIX/lib/pkgconfig"
printf '#!/bin/sh\\necho hello from {name}\\n' > "$PREFIX/bin/hello-{name}"
chmod +x "$PREFIX/bin/hello-{name}"
echo '.TH HELLO 1' > "$PREFIX/share/man/man1/hello-{name}.1"
printf 'prefix=%s\\nName: hello-{name}\\nVersion: 1\\nDescription: test\\n' "$PREFIX" > "$PREFIX/lib/pkgconfig/hello-{name}.pc"
'''
""")
    for name, opts in profiles.items():
        env = opts.get("env") or {}
        assert isinstance(env, dict)
        env_items = ", ".join(f"{k} = {_toml_string(v)}" for k, v in env.items())
        family = f"family = {_toml_string(str(opts['family']))}\n" if opts.get("family") else ""
        about = (f"description = {_toml_string(str(opts['description']))}\n"
                 if opts.get("description") else "")
        parts.append(f"[profiles.{name}]\npackages = [\"pkg-{name}\"]\n"
                     f"env = {{ {env_items} }}\n{family}{about}")
    return "\n".join(parts)


def build_profiles(store: Path, work: Path, profiles: dict[str, dict[str, object]]) -> None:
    """Build real profiles with the real `hdenv build` into `store`."""
    import subprocess
    import sys

    stack = work / "shelltest.toml"
    stack.write_text(stack_text(profiles), encoding="utf-8")
    hdenv = str(Path(sys.executable).parent / "hdenv")
    env = {**os.environ, "HDENV_STORE": str(store), "HDENV_CONFIG": str(work / "none.toml")}
    (work / "none.toml").write_text("")
    proc = subprocess.run([hdenv, "build", str(stack)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def add_artifact(root: Path, aid: str) -> None:
    """A valid artifact directory (only its metadata): enough for REFs and catalogs."""
    meta = root / "artifacts" / aid / ".hdenv"
    meta.mkdir(parents=True)
    (meta / "artifact.json").write_text(json.dumps({"id": aid}))


def add_profile(root: Path, name: str, artifacts: list[str], generation: int = 1,
                current: bool = True, description: str = "") -> str:
    """Generation `generation` of `name` holding `artifacts` (by id), as a build leaves it."""
    hash_ = fake_hash(f"{name}-{generation}")
    prefix = root / "profiles" / hash_
    (prefix / ".hdenv").mkdir(parents=True)
    (prefix / ".hdenv" / "profile.json").write_text(json.dumps(
        {"hash": hash_, "artifacts": artifacts, "env": {}, "family": None}))
    ndir = root / "names" / name
    ndir.mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../profiles/{hash_}", ndir / str(generation))
    if description:
        (root / "specs").mkdir(parents=True, exist_ok=True)
        (root / "specs" / f"{hash_}.about.json").write_text(json.dumps({"description": description}))
    if current:
        if os.path.lexists(ndir / "current"):
            os.unlink(ndir / "current")
        os.symlink(str(generation), ndir / "current")
    return hash_
