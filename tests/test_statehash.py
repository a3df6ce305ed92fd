"""`hdenv loaded --hash` (issue 22 item 3): one hash for everything loaded, in real bash.

Two profiles loaded through the shell function give one profile hash; a fresh
shell that loads that hash has the same programs on PATH and the same settings.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from shellfixtures import build_profiles

VENV_BIN = str(Path(sys.executable).parent)


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def _two_profiles(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store with the profiles demo and other, and the environment of a user of it."""
    store = tmp_path / "store"
    build_profiles(store, tmp_path, {"demo": {"env": {"DEMO": "one"}},
                                     "other": {"env": {"OTHER": "1"}}})
    (tmp_path / "none.toml").write_text("")
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "TERM": "dumb", "HDENV_STORE": str(store), "HDENV_CONFIG": str(tmp_path / "none.toml"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return store, env


def test_the_loaded_state_is_one_hash_that_loads_the_same_state(tmp_path: Path) -> None:
    store, env = _two_profiles(tmp_path)
    init = 'eval "$(hdenv init bash)"\n'
    first = _bash(init + "hdenv load demo && hdenv load other\n"
                         "hdenv loaded --hash\n"
                         "hdenv loaded --hash\n"  # asked twice: the same profile
                         "command -v hello-demo hello-other\necho \"$DEMO $OTHER\"\n",
                  env, tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    state, again = lines[0], lines[1]
    assert len(state) == 32 and state == again
    assert lines[-1] == "one 1"
    second = _bash(init + f"hdenv load {state}\n"
                          "command -v hello-demo hello-other\necho \"$DEMO $OTHER\"\n"
                          "hello-demo && hello-other\n",
                   env, tmp_path)
    assert second.returncode == 0, second.stderr
    out = second.stdout.splitlines()
    assert out[:2] == [f"{store}/profiles/{state}/bin/hello-demo",
                       f"{store}/profiles/{state}/bin/hello-other"]
    assert out[2] == "one 1"
    assert out[3:] == ["hello from demo", "hello from other"]
    # one profile loaded: the state is that profile itself
    alone = _bash(init + "hdenv load demo && hdenv loaded --hash && hdenv loaded --json",
                  env, tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert f'"hash": "{alone.stdout.splitlines()[0]}"' in alone.stdout
    nothing = _bash(init + "hdenv loaded --hash", env, tmp_path)
    assert nothing.returncode == 2 and "nothing is loaded" in nothing.stderr


def test_gc_keeps_the_state_profile_while_what_it_holds_lives(tmp_path: Path) -> None:
    """A state hash quoted in a bug report must still load after the reporter's next gc
    (nothing in the store names it), and go once its artifacts go."""
    store, env = _two_profiles(tmp_path)
    init = 'eval "$(hdenv init bash)"\n'
    made = _bash(init + "hdenv load demo && hdenv load other && hdenv loaded --hash", env,
                 tmp_path)
    assert made.returncode == 0, made.stderr
    state = made.stdout.splitlines()[-1]
    gc = subprocess.run(["hdenv", "gc"], env=env, capture_output=True, text=True)
    assert gc.returncode == 0, gc.stderr
    later = _bash(init + f"hdenv load {state} && hello-demo && hello-other", env, tmp_path)
    assert later.returncode == 0, later.stderr
    assert later.stdout.splitlines() == ["hello from demo", "hello from other"]
    # once the named profiles are gone, their artifacts go and the state with them
    for name in ("demo", "other"):
        subprocess.run(["hdenv", "remove", name], env=env, capture_output=True)
        shutil.rmtree(store / "names" / name, ignore_errors=True)
    subprocess.run(["hdenv", "gc"], env=env, check=True, capture_output=True)
    assert not (store / "profiles" / state).exists()
