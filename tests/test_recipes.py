"""Recipe repositories (issue 24): stacks that only choose, through the real program.

Fast tests here plan with `build --dry-run` (ids are what a choice changes) and
check the one-line errors; tests/test_recipes_build.py builds real archives.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

from conftest import Runner, require_tool

from hdenv.build.stackfile import load_stack
from hdenv.recipes.buildsystems import render_script, word
from hdenv.recipes.repos import parse_refs


def _tarball(where: Path, name: str, files: dict[str, str]) -> tuple[str, str]:
    """A .tar.gz with one top directory; (file:// URL, sha256). The same files give the
    same bytes whenever it is made (gzip's header would hold the second it was written:
    a recipe pinned to the first of two tarballs made a second apart failed its hash)."""
    path = where / f"{name}.tar.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return f"file://{path}", hashlib.sha256(path.read_bytes()).hexdigest()


def _recipe(repo: Path, name: str, text: str) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    path = repo / f"{name}.toml"
    path.write_text(text)
    return path


def _script_recipe(repo: Path, where: Path, name: str, extra: str = "",
                   script: str = 'mkdir -p "$PREFIX/bin"') -> None:
    url, sha = _tarball(where, name, {"README": name})
    _recipe(repo, name, f'description = "{name}"\nscript = \'{script}\'\n{extra}\n'
                        f'[versions."1.0"]\nurl = "{url}"\nsha256 = "{sha}"\n')


def _ids(run_hdenv: Runner, stack: Path) -> dict[str, str]:
    """name -> id of everything a dry run would build."""
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"would build (\S+)/\S+/(\w+) ", proc.stdout + proc.stderr)
    return {name: aid for name, aid in found}


def _stack(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_stack_of_names_takes_versions_sources_and_dependencies_from_the_recipes(
        run_hdenv: Runner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _script_recipe(repo, tmp_path, "base")
    _script_recipe(repo, tmp_path, "app", 'deps = ["base"]')
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["repo"]\n[packages.app]\n')
    ids = _ids(run_hdenv, stack)
    assert set(ids) >= {"app", "base"}  # base is pulled in by app's recipe
    # a later edit of the recipe's script is a new spec, so a new id
    _script_recipe(repo, tmp_path, "app", 'deps = ["base"]',
                   script='mkdir -p "$PREFIX/share"')
    assert _ids(run_hdenv, stack)["app"] != ids["app"]


def test_a_recipe_that_renders_a_byte_identical_script_gives_the_hand_written_id(
        run_hdenv: Runner, tmp_path: Path) -> None:
    url, sha = _tarball(tmp_path, "tool", {"configure": "#!/bin/sh\n"})
    _recipe(tmp_path / "repo", "tool", f'''build-system = "autotools"
configure-args = ["--disable-nls", "--with-x=$HDENV_DEP_BASE"]
[versions."2.0"]
url = "{url}"
sha256 = "{sha}"
''')
    by_recipe = _stack(tmp_path / "a.toml", '[stack]\nname = "s"\nrepos = ["repo"]\n'
                                            '[packages.tool]\n')
    script = render_script("autotools", {"configure-args": ["--disable-nls",
                                                            "--with-x=$HDENV_DEP_BASE"]})
    by_hand = _stack(tmp_path / "b.toml", f"""[stack]
name = "s"
[packages.tool]
version = "2.0"
sources = [{{ url = "{url}", sha256 = "{sha}", strip = 1 }}]
script = '''{script}'''
""")
    assert _ids(run_hdenv, by_recipe)["tool"] == _ids(run_hdenv, by_hand)["tool"]


def test_use_switches_the_provider_of_a_virtual_and_only_what_is_above_it(
        run_hdenv: Runner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _script_recipe(repo, tmp_path, "impl-a", 'provides = ["greeter"]')
    _script_recipe(repo, tmp_path, "impl-b", 'provides = ["greeter"]')
    _script_recipe(repo, tmp_path, "app", 'deps = ["greeter"]')
    _script_recipe(repo, tmp_path, "other")
    text = '[stack]\nrepos = ["repo"]\n[packages.app]\n[packages.other]\n' \
           '[packages.greeter]\nuse = "{}"\n'
    with_a = _ids(run_hdenv, _stack(tmp_path / "a.toml", text.format("impl-a")))
    with_b = _ids(run_hdenv, _stack(tmp_path / "b.toml", text.format("impl-b")))
    assert "impl-a" in with_a and "impl-b" not in with_a
    assert "impl-b" in with_b and "impl-a" not in with_b
    assert with_a["app"] != with_b["app"]
    assert with_a["other"] == with_b["other"]
    # asking for the virtual without choosing names the providers
    proc = run_hdenv("build", "--dry-run", str(_stack(
        tmp_path / "c.toml", '[stack]\nrepos = ["repo"]\n[packages.app]\n')))
    assert proc.returncode == 2
    assert "greeter" in proc.stderr and "impl-a, impl-b" in proc.stderr
    assert 'use = "impl-a"' in proc.stderr


def test_a_use_that_names_a_non_provider_is_one_line_at_its_line(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    repo = tmp_path / "repo"
    _script_recipe(repo, tmp_path, "impl-a", 'provides = ["greeter"]')
    _script_recipe(repo, tmp_path, "other")
    _script_recipe(repo, tmp_path, "app", 'deps = ["greeter"]')
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["repo"]\n[packages.app]\n\n'
                                        '[packages.greeter]\nuse = "other"\n')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"{stack}:6:" in proc.stderr and "other does not provide greeter" in proc.stderr
    assert "impl-a" in proc.stderr
    assert not store_dir.exists()


def test_a_when_conditional_dependency_appears_only_under_its_parameter(
        run_hdenv: Runner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _script_recipe(repo, tmp_path, "mpi-impl")
    _script_recipe(repo, tmp_path, "solver", 'deps = [{ name = "mpi-impl", when = "mpi" }]\n'
                                             '[parameters]\nmpi = false\n')
    plain = _ids(run_hdenv, _stack(tmp_path / "a.toml",
                                   '[stack]\nrepos = ["repo"]\n[packages.solver]\n'))
    with_mpi = _ids(run_hdenv, _stack(
        tmp_path / "b.toml",
        '[stack]\nrepos = ["repo"]\n[packages.solver]\nparameters = { mpi = true }\n'))
    assert "mpi-impl" not in plain
    assert "mpi-impl" in with_mpi and with_mpi["solver"] != plain["solver"]


def test_parameters_are_checked_against_the_recipe(run_hdenv: Runner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _script_recipe(repo, tmp_path, "lib", '[parameters]\nshared = { default = true,'
                                          ' values = [true, false] }\n')
    for table, message in (('parameters = { shared = "yes" }',
                            "parameter shared cannot be 'yes' (allowed: True, False)"),
                           ('parameters = { static = true }',
                            "no parameter 'static' (parameters: shared)"),
                           ('version = "9.9"', "has no version 9.9 (versions: 1.0)")):
        stack = _stack(tmp_path / "s.toml", f'[stack]\nrepos = ["repo"]\n[packages.lib]\n'
                                            f'{table}\n')
        proc = run_hdenv("build", "--dry-run", str(stack))
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and f"{stack}:4:" in proc.stderr, proc.stderr


def test_bad_recipes_are_one_line_naming_the_recipe_file_and_line(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    repo = tmp_path / "repo"
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["repo"]\n[packages.bad]\n')
    cases = [
        ('description = "x"\nbuild-system = "autotools"\nconfigure-flags = ["-x"]\n',
         3, "unknown key 'configure-flags' in a recipe (allowed: build-deps, build-system,"),
        ('build-system = "cmake"\n[versions."1.0"]\nurl = "https://example.org/b.tar.gz"\n',
         2, "has a url without sha256"),
        ('build-system = "scons"\n', 1, "build-system must be one of autotools, cmake"),
        ('build-system = "make"\n', 1, "needs at least one [versions"),
        ('build-system = "make"\n[versions."1.0"]\ngit = "https://example.org/r.git"\n',
         2, "has git without commit"),
        ('build-system = "make"\n[parameters]\nopt = { default = "a", values = ["b"] }\n',
         3, "its default is not among its values"),
        ('build-system = "make"\nversions = [\n', 3, "invalid TOML"),
    ]
    for text, line, message in cases:
        recipe = _recipe(repo, "bad", text)
        proc = run_hdenv("build", str(stack))
        assert proc.returncode == 2, (text, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert f"{recipe}:{line}:" in proc.stderr and message in proc.stderr, proc.stderr
        assert not store_dir.exists()


def test_a_cycle_through_recipes_is_named(run_hdenv: Runner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _script_recipe(repo, tmp_path, "a", 'deps = ["b"]')
    _script_recipe(repo, tmp_path, "b", 'deps = ["c"]')
    _script_recipe(repo, tmp_path, "c", 'deps = ["a"]')
    proc = run_hdenv("build", "--dry-run", str(_stack(
        tmp_path / "s.toml", '[stack]\nrepos = ["repo"]\n[packages.a]\n')))
    assert proc.returncode == 2
    assert "dependency cycle" in proc.stderr
    assert all(n in proc.stderr for n in ("a", "b", "c"))


def test_a_missing_repository_or_recipe_is_one_line(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["nowhere"]\n[packages.x]\n')
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 2 and f"{stack}:2:" in proc.stderr
    assert "recipe repository" in proc.stderr and "nowhere" in proc.stderr
    (tmp_path / "repo").mkdir()
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["repo"]\n[packages.x]\n')
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 2 and f"{stack}:3:" in proc.stderr
    assert "no recipe named x" in proc.stderr


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(repo.parent),
                                          "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                                          "GIT_COMMITTER_NAME": "t",
                                          "GIT_COMMITTER_EMAIL": "t@x"}).stdout.strip()


def test_a_git_repository_is_read_at_the_pinned_commit_only(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("git")
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "-q")
    _script_recipe(origin / "pkgs", tmp_path, "tool")
    _git(origin, "add", ".")
    _git(origin, "commit", "-q", "-m", "first")
    first = _git(origin, "rev-parse", "HEAD")
    _script_recipe(origin / "pkgs", tmp_path, "tool", script='mkdir -p "$PREFIX/lib"')
    _git(origin, "commit", "-q", "-am", "second")
    second = _git(origin, "rev-parse", "HEAD")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    text = ('[stack]\nrepos = [{{ git = "{}", commit = "{}", path = "pkgs" }}]\n'
            '[packages.tool]\n')

    def ids(commit: str) -> dict[str, str]:
        stack = _stack(tmp_path / "s.toml", text.format(origin, commit))
        proc = run_hdenv("build", "--dry-run", str(stack), env=env)
        assert proc.returncode == 0, proc.stderr
        return dict(re.findall(r"would build (\S+)/\S+/(\w+) ", proc.stdout))

    pinned = ids(first)
    assert ids(first) == pinned  # the newer commit on the branch changes nothing
    built = run_hdenv("build", str(tmp_path / "s.toml"), env=env)  # and it builds
    assert built.returncode == 0, built.stderr
    assert pinned["tool"] in run_hdenv("list", "artifacts", check=True).stdout
    assert ids(second)["tool"] != pinned["tool"]  # until the pin moves
    stack = _stack(tmp_path / "s.toml", text.format(origin, "0" * 40))
    proc = run_hdenv("build", "--dry-run", str(stack), env=env)
    assert proc.returncode == 2 and f"{stack}:2:" in proc.stderr
    assert f"has no commit {'0' * 40}" in proc.stderr


def test_recipes_and_info_list_what_the_repositories_offer(
        run_hdenv: Runner, tmp_path: Path) -> None:
    proc = run_hdenv("recipes", "--json", check=True)  # no repos configured: the built-in one
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["libpng"]["build-system"] == "autotools" and rows["libpng"]["versions"]
    assert rows["json-c"]["build-system"] == "cmake"
    assert rows["gcc"]["build-system"] == "host"
    text = run_hdenv("recipes", "yaml", check=True).stdout
    assert "libyaml" in text and "pyyaml" in text and "zlib" not in text
    info = run_hdenv("info", "zlib", check=True).stdout
    assert "parameter shared = true of true, false" in info
    assert 'sha256 = "71feb79' in info  # the recipe file itself
    proc = run_hdenv("info", "zli")
    assert proc.returncode == 2 and "did you mean zlib" in proc.stderr
    # a stack's own repository is asked first
    repo = tmp_path / "repo"
    _script_recipe(repo, tmp_path, "zlib")
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["repo", "builtin"]\n')
    mine = run_hdenv("info", "zlib", "--stack", str(stack), check=True).stdout
    assert str(repo / "zlib.toml") in mine
    listed = run_hdenv("recipes", "--stack", str(stack), check=True).stdout.splitlines()
    (zlib,) = [line for line in listed if line.startswith("zlib ")]
    assert zlib.endswith(f"[{repo}]")  # two repositories: each row says where it is from


def test_arguments_are_single_words_where_only_variables_expand(tmp_path: Path) -> None:
    args = ["plain", "two words", "$HDENV_DEP_ZLIB/lib", "${PREFIX}x", "$(touch pwned)",
            "`touch pwned`", 'q"uote', "back\\slash", "*"]
    line = "printf '%s\\n'" + "".join(" " + word(a) for a in args)
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HDENV_DEP_ZLIB": "/z",
                              "PREFIX": "/p"}).stdout.splitlines()
    assert out == ["plain", "two words", "/z/lib", "/px", "$(touch pwned)", "`touch pwned`",
                   'q"uote', "back\\slash", "*"]
    assert not (tmp_path / "pwned").exists()


def test_a_matrix_toolchain_joins_compiled_packages_with_its_compilers_as_cc(
        tmp_path: Path) -> None:
    url, sha = _tarball(tmp_path, "lib", {"configure": "#!/bin/sh\n"})
    _recipe(tmp_path / "repo", "lib", f'build-system = "autotools"\n[versions."1.0"]\n'
                                      f'url = "{url}"\nsha256 = "{sha}"\n')
    _script_recipe(tmp_path / "repo", tmp_path, "data")  # a script recipe compiles nothing
    stack = _stack(tmp_path / "s.toml", '''[stack]
repos = ["repo", "builtin"]
toolchain = ["{{ compiler }}"]
[matrix]
compiler = ["gcc", "clang"]
[packages.lib]
[packages.data]
''')
    loaded = load_stack(stack)
    by_compiler = {v.values["compiler"]: v.packages for v in loaded.variants}
    assert by_compiler["gcc"]["lib"].build_deps == ["gcc"]
    assert by_compiler["gcc"]["lib"].env["CC"] == "gcc"
    assert by_compiler["gcc"]["lib"].env["CXX"] == "g++"
    assert by_compiler["clang"]["lib"].build_deps == ["clang"]
    assert by_compiler["clang"]["lib"].env["CC"] == "clang"
    assert by_compiler["clang"]["data"].build_deps == [] and "CC" not in \
        by_compiler["clang"]["data"].env
    assert {"gcc", "clang"} <= set(loaded.hosts)  # host captures from the built-in recipes


def test_config_repos_come_after_the_stacks_own_and_resolve_from_the_config_file(
        run_hdenv: Runner, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _script_recipe(site / "recipes", tmp_path, "tool")
    _script_recipe(site / "recipes", tmp_path, "extra")
    config = site / "config.toml"
    config.write_text('repos = ["recipes"]\n')  # relative to the config file
    own = tmp_path / "own"
    _script_recipe(own, tmp_path, "tool", script='mkdir -p "$PREFIX/own"')
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["own"]\n[packages.tool]\n'
                                        '[packages.extra]\n')
    proc = run_hdenv("build", "--dry-run", str(stack), env={"HDENV_CONFIG": str(config)})
    assert proc.returncode == 0, proc.stderr
    assert "would build extra/" in proc.stdout  # only the site has it
    plan = load_stack(stack, site_repos=parse_refs([str(site / "recipes")], tmp_path, "c", 1))
    (variant,) = plan.variants
    assert "$PREFIX/own" in variant.packages["tool"].script  # the stack's repository wins
    assert variant.packages["tool"].recipe == str(own / "tool.toml")


def test_a_recipe_version_from_a_git_commit_builds(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("git")
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    _git(upstream, "init", "-q")
    (upstream / "VERSION").write_text("0.9-dev\n")
    _git(upstream, "add", ".")
    _git(upstream, "commit", "-q", "-m", "tool")
    commit = _git(upstream, "rev-parse", "HEAD")
    _recipe(tmp_path / "repo", "tool", f'''script = 'mkdir -p "$PREFIX/share" && cp VERSION "$PREFIX/share/"'
[versions."0.9"]
git = "{upstream}"
commit = "{commit}"
''')
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["repo"]\n[packages.tool]\n')
    run_hdenv("build", str(stack), check=True)
    (line,) = [x for x in run_hdenv("list", "artifacts", check=True).stdout.splitlines()
               if x.startswith("tool/0.9/")]
    prefix = Path(run_hdenv("path", line.split()[0], check=True).stdout.strip())
    assert (prefix / "share" / "VERSION").read_text() == "0.9-dev\n"


def test_a_versions_patches_apply_from_beside_the_recipe(run_hdenv: Runner,
                                                          tmp_path: Path) -> None:
    url, sha = _tarball(tmp_path, "tool", {"greeting": "hello\n"})
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tool-polite.patch").write_text(
        "--- a/greeting\n+++ b/greeting\n@@ -1 +1 @@\n-hello\n+hello, please\n")
    _recipe(repo, "tool", f'''script = 'mkdir -p "$PREFIX/share" && cp greeting "$PREFIX/share/"'
[versions."1.0"]
url = "{url}"
sha256 = "{sha}"
patches = ["tool-polite.patch"]
''')
    stack = _stack(tmp_path / "s.toml", '[stack]\nrepos = ["repo"]\n[packages.tool]\n')
    run_hdenv("build", str(stack), check=True)
    (line,) = [x for x in run_hdenv("list", "artifacts", check=True).stdout.splitlines()
               if x.startswith("tool/1.0/")]
    prefix = Path(run_hdenv("path", line.split()[0], check=True).stdout.strip())
    assert (prefix / "share" / "greeting").read_text() == "hello, please\n"
