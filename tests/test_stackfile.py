"""Stack file parsing: rendering, variants, and one-line errors with FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from hdenv.build.stackfile import PROFILE_PLACEHOLDER, load_stack
from hdenv.errors import UserError

BASE = """\
[stack]
name = "s"

[parameters]
cflags = "-O2"

[host.gcc]
programs = ["gcc"]

[packages.lib]
version = "1.0"
build-deps = ["gcc"]
env = { CFLAGS = "{{ cflags }}" }
script = "make"

[packages.app]
version = "0.1"
deps = ["lib"]
script = "make install"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, **kw: object) -> UserError:
    with pytest.raises(UserError) as info:
        load_stack(write(tmp_path, text), **kw)  # type: ignore[arg-type]
    return info.value


def test_renders_parameters_and_set_overrides(tmp_path: Path) -> None:
    stack = load_stack(write(tmp_path, BASE))
    assert stack.name == "s"
    (variant,) = stack.variants
    assert variant.packages["lib"].env == {"CFLAGS": "-O2"}
    assert variant.packages["app"].deps == ["lib"]
    assert [p.name for p in variant.profiles] == ["s"]
    assert variant.profiles[0].packages == ["lib", "app"]
    stack = load_stack(write(tmp_path, BASE), {"cflags": "-O3"})
    assert stack.variants[0].packages["lib"].env == {"CFLAGS": "-O3"}


def test_stack_named_after_file_without_stack_table(tmp_path: Path) -> None:
    path = tmp_path / "mystack.toml"
    path.write_text(BASE.replace('[stack]\nname = "s"\n', ""))
    assert load_stack(path).name == "mystack"


def test_matrix_gives_variants_in_key_order_with_values_in_templates(tmp_path: Path) -> None:
    text = BASE + """
[matrix]
compiler = ["gcc", "clang"]
build_type = ["release", "debug"]

[host.clang]
programs = ["clang"]

[packages.tool]
version = "1"
build-deps = ["{{ compiler }}"]
env = { CFLAGS = "{{ cflags }}{% if build_type == 'debug' %} -g{% endif %}" }
when = "compiler != 'clang' or build_type == 'release'"
"""
    stack = load_stack(write(tmp_path, text))
    suffixes = [v.suffix for v in stack.variants]
    assert suffixes == ["-gcc-release", "-gcc-debug", "-clang-release", "-clang-debug"]
    by_suffix = {v.suffix: v for v in stack.variants}
    assert by_suffix["-gcc-debug"].packages["tool"].env["CFLAGS"] == "-O2 -g"
    assert by_suffix["-clang-release"].packages["tool"].build_deps == ["clang"]
    assert "tool" not in by_suffix["-clang-debug"].packages
    assert by_suffix["-clang-debug"].profiles[0].name == "s-clang-debug"


def test_set_narrows_a_matrix_key(tmp_path: Path) -> None:
    text = BASE + '\n[matrix]\nbuild_type = ["release", "debug"]\n'
    stack = load_stack(write(tmp_path, text), {"build_type": "debug"})
    assert [v.suffix for v in stack.variants] == ["-debug"]


def test_profiles_table_and_profile_placeholder(tmp_path: Path) -> None:
    text = BASE + """
[profiles.demo]
packages = ["app"]
env = { DEMO_HOME = "{{ profile }}/share/demo" }
family = "compiler"
exclude = ["share/info/dir"]
"""
    (variant,) = load_stack(write(tmp_path, text)).variants
    (profile,) = variant.profiles
    assert profile.name == "demo"
    assert profile.env == {"DEMO_HOME": f"{PROFILE_PLACEHOLDER}/share/demo"}
    assert profile.family == "compiler"
    assert profile.exclude == ["share/info/dir"]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (BASE + "\n[packages.x]\nversion = '1'\nbogus = 1\n", 23, "unknown key 'bogus'"),
        (BASE + "\n[packages.x]\nversion = '1'\ndeps = ['nothere']\n", 23, "unknown dependency 'nothere'"),
        (BASE.replace('"{{ cflags }}"', '"{{ nosuch }}"'), 13, "undefined"),
        (BASE + "\n[packages.x]\nscript = 'true'\n", 21, "needs a 'version'"),
        (BASE + "\n[nonsense]\na = 1\n", 21, "unknown key 'nonsense'"),
        (BASE + "\n[packages.y]\nversion = '1'\nsources = [{ url = 'http://x/y.tgz', sha256 = 'zz' }]\n",
         23, "sha256"),
        (BASE + "\n[profiles.p]\npackages = ['ghost']\n", 22, "unknown package 'ghost'"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    err = error_of(tmp_path, text)
    assert err.file == str(tmp_path / "stack.toml")
    assert err.line == line, err.render()
    assert fragment in err.message
    assert err.exit_code == 2
    assert "\n" not in err.render()


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE + "\n[packages.z\nversion = 1\n")
    assert err.line == 21
    assert err.render().startswith(f"{tmp_path / 'stack.toml'}:21: invalid TOML")


def test_dependency_cycle_is_named(tmp_path: Path) -> None:
    text = BASE.replace('script = "make"\n', 'script = "make"\ndeps = ["app"]\n', 1)
    err = error_of(tmp_path, text)
    assert "dependency cycle" in err.message
    assert "lib" in err.message and "app" in err.message


def test_unknown_set_parameter(tmp_path: Path) -> None:
    err = error_of(tmp_path, BASE, overrides={"nope": "1"})
    assert "no such parameter" in err.message


def test_template_syntax_error_points_into_multiline_script(tmp_path: Path) -> None:
    text = BASE.replace('script = "make install"', 'script = """\nmake\nmake {{ install\n"""')
    err = error_of(tmp_path, text)
    assert err.line is not None and err.line >= 19


def test_a_template_of_one_name_prints_what_jinja_prints(tmp_path: Path) -> None:
    """`{{ name }}` of a string parameter is taken without a render (stackfile._ONE_NAME):
    the same value, the same error past the size limit, and anything else rendered."""
    text = BASE.replace('cflags = "-O2"', 'cflags = "-O2"\njobs = 4').replace(
        '{ CFLAGS = "{{ cflags }}" }',
        '{ CFLAGS = "{{cflags}}", JOBS = "{{ jobs }}", BOTH = "{{ cflags }} {{ jobs }}" }')
    (variant,) = load_stack(write(tmp_path, text)).variants
    assert variant.packages["lib"].env == {"CFLAGS": "-O2", "JOBS": "4", "BOTH": "-O2 4"}
    big = "x" * ((1 << 20) + 1)
    plain = error_of(tmp_path, text, overrides={"cflags": big})
    rendered = error_of(tmp_path, text.replace("{{cflags}}", "{{ cflags ~ '' }}"),
                        overrides={"cflags": big})
    assert plain.message == rendered.message
    assert "the value has 1048577 characters" in plain.message, plain.message


def test_a_stack_without_template_logic_reads_without_jinja(tmp_path: Path) -> None:
    """Jinja2's import is 40-100 ms: a stack of plain strings and `{{ name }}` (the
    benchmarks' 5,000 packages) must not pay it; a real expression still renders."""
    import subprocess
    import sys

    plain = write(tmp_path, BASE)
    expression = tmp_path / "expression.toml"
    expression.write_text(BASE.replace("{{ cflags }}", "{{ cflags ~ ' -g' }}"))
    probe = ("import sys; from pathlib import Path; from hdenv.build.stackfile import load_stack;"
             " env = load_stack(Path(sys.argv[1])).variants[0].packages['lib'].env;"
             " print(env['CFLAGS'], 'jinja2' in sys.modules)")
    seen = [subprocess.run([sys.executable, "-c", probe, str(p)], capture_output=True,
                           text=True, check=True).stdout.split()
            for p in (plain, expression)]
    assert seen == [["-O2", "False"], ["-O2", "-g", "True"]]
