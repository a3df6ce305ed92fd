"""`hdenv build-node ID`: what a batch job runs, tried directly (no Slurm needed).

It must build exactly the stored spec, from the store alone, record the job it
ran in, and refuse a spec that does not hash to its id.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from conftest import Runner

from hdenv.build.plan import plan_stack
from hdenv.build.scheduler import capture_host
from hdenv.build.stackfile import load_stack
from hdenv.store.layout import Store
from hdenv.store.sources import SourceStore

STACK = """
[packages.dep]
version = "1"
script = 'mkdir -p "$PREFIX/lib" && echo dep > "$PREFIX/lib/dep.txt"'

[packages.app]
version = "2"
deps = ["dep"]
script = '''
mkdir -p "$PREFIX/share"
echo "$HDENV_JOBS" > "$PREFIX/share/jobs"
cat "$HDENV_DEP_DEP/lib/dep.txt" > "$PREFIX/share/from-dep"
'''

[packages.broken]
version = "1"
script = 'echo the-reason-it-broke; exit 4'
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Specs stored and host tools captured, as the submitting side leaves a store."""
    tmp = tmp_path_factory.mktemp("planned")
    (tmp / "s.toml").write_text(STACK)
    store = Store(tmp / "store").ensure()
    plan = plan_stack(load_stack(tmp / "s.toml"), store, SourceStore(store, []))
    ids = {}
    for nid, node in plan.nodes.items():
        if node.kind == "host":
            capture_host(store, node)
        else:
            store.write_spec(nid.rsplit("/", 1)[1], node.spec)
        ids[node.spec["name"]] = nid
    return store.root, ids


@pytest.fixture
def planned(template: tuple[Path, dict[str, str]], store_dir: Path) -> dict[str, str]:
    """A copy of the template store for one test (host captures are symlinks: kept)."""
    shutil.copytree(template[0], store_dir, symlinks=True)
    return template[1]


def test_build_node_builds_the_stored_spec(run_hdenv: Runner, tmp_path: Path,
                                           store_dir: Path, planned: dict[str, str]) -> None:
    ids = planned
    env = {"SLURM_JOB_ID": "4242"}
    run_hdenv("build-node", ids["dep"], "--result", str(tmp_path / "dep.json"), env=env,
              check=True)
    proc = run_hdenv("build-node", ids["app"], "--jobs", "3", "--result",
                     str(tmp_path / "app.json"), env=env, check=True)
    assert proc.stderr == f"built: {ids['app']}\n"
    prefix = store_dir / "artifacts" / Path(ids["app"])
    assert (prefix / "share" / "jobs").read_text() == "3\n"
    assert (prefix / "share" / "from-dep").read_text() == "dep\n"
    host = socket.gethostname()
    assert (prefix / ".hdenv" / "build.log").read_text().startswith(
        f"hdenv: slurm job 4242 on {host}\nhdenv: building {ids['app']}\n")
    meta = json.loads((prefix / ".hdenv" / "artifact.json").read_text())
    assert meta["slurm"] == {"job_id": "4242", "node": host}
    assert meta["runtime_deps"] == [ids["dep"]]
    result = json.loads((tmp_path / "app.json").read_text())
    assert result["ok"] is True and result["built"] is True and result["job_id"] == "4242"
    assert result["started"] <= result["finished"]
    # a second job for the same artifact (another run) finds it present
    again = run_hdenv("build-node", ids["app"], env=env, check=True)
    assert again.stderr == f"already present: {ids['app']}\n"


def test_build_node_failure_reports_the_log(run_hdenv: Runner, tmp_path: Path,
                                            store_dir: Path, planned: dict[str, str]) -> None:
    ids = planned
    proc = run_hdenv("build-node", ids["broken"], "--result", str(tmp_path / "r.json"),
                     env={"SLURM_JOB_ID": ""})  # as outside any batch job
    assert proc.returncode == 1, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["ok"] is False and "job_id" not in result
    assert result["error"].startswith(f"build of {ids['broken']} failed (exit 4); log: ")
    assert result["error"].endswith("\nthe-reason-it-broke")
    assert proc.stderr == f"hdenv: error: {result['error']}\n"
    log = Path(result["error"].split("log: ", 1)[1].split("\n", 1)[0])
    assert log.read_text().startswith(f"hdenv: build-node on {socket.gethostname()}\n")
    assert list((store_dir / "artifacts" / "broken" / "1").iterdir()) == []
    # its inputs must be there: a job started before its dependency is refused
    early = run_hdenv("build-node", ids["app"])
    assert early.returncode == 2
    assert early.stderr == f"hdenv: error: artifact {ids['dep']} is not in the store\n"


def test_build_node_refuses_a_changed_spec(run_hdenv: Runner, store_dir: Path,
                                           planned: dict[str, str]) -> None:
    ids = planned
    hash_ = ids["dep"].rsplit("/", 1)[1]
    spec_file = store_dir / "specs" / f"{hash_}.json"
    spec_file.write_text(spec_file.read_text().replace("echo dep", "echo evil"))
    proc = run_hdenv("build-node", ids["dep"])
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: the stored spec of {ids['dep']} does not hash to its"
                           f" id ({spec_file} was changed)\n")
    assert not (store_dir / "artifacts" / "dep").exists()
    unknown = run_hdenv("build-node", "dep/1/" + "a" * 32)
    assert unknown.returncode == 2
    assert unknown.stderr == f"hdenv: error: no spec with hash {'a' * 32} in the store\n"
    host = run_hdenv("build-node", ids["posix-tools"])
    assert host.returncode == 2
    assert host.stderr == f"hdenv: error: {ids['posix-tools']} is not a build (kind 'host')\n"
