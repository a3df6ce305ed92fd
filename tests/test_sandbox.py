"""The stack-file template sandbox: no Python internals, no runaway values."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from hdenv.build.sandbox import StackSandbox


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ [1].append(2) }}",
    "{{ 'x' * 10 ** 9 }}",
    "{{ 9 ** (9 ** 9) }}",
    "{% set n = 9 %}{{ n ** (n ** n) }}",
])
def test_unsafe_templates_raise_security_error(template: str) -> None:
    with pytest.raises(SecurityError):
        StackSandbox().from_string(template).render({})


def test_ordinary_templates_render() -> None:
    env = StackSandbox()
    out = env.from_string("{{ cflags }}{% if t == 'debug' %} -g{% endif %} {{ 2 ** 10 }}"
                          " {{ 'ab' * 2 }}\n").render({"cflags": "-O2", "t": "debug"})
    assert out == "-O2 -g 1024 abab\n"
    with pytest.raises(UndefinedError):
        env.from_string("{{ nope }}").render({})
    assert env.compile_expression("t != 'x'")(t="y") is True
