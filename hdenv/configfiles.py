"""Which config files are in force, and in what order: the user's over the site's.

A site installs `/etc/hdenv/config.toml` (or points `HDENV_SITE_CONFIG` at
another file) with what every user should get: upstream stores, the usage
log, mirrors. A user's own `config.toml` sits above it and may override any
setting. Both the full program (`config.py`) and the load fast path use this
module, so they can never disagree on where a setting comes from; it imports
nothing until a file actually exists, because the fast path pays for every
import on each `hdenv load`.
"""

from __future__ import annotations

SITE_CONFIG = "/etc/hdenv/config.toml"
SITE_ENV = "HDENV_SITE_CONFIG"
USER_ENV = "HDENV_CONFIG"

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc costs ms on every load
    from collections.abc import Callable, Mapping


def config_files(env: Mapping[str, str], default_user: str) -> list[tuple[str, bool, str]]:
    """(path, explicit, role) of each config file, highest precedence first.

    An explicit file (named by HDENV_CONFIG / HDENV_SITE_CONFIG) must exist;
    an implicit one may be absent. `HDENV_SITE_CONFIG=` (empty) means no site
    file, which is what tests and users escaping a broken site file need.
    """
    files = []
    if USER_ENV in env:
        files.append((env[USER_ENV], True, "user"))
    elif default_user:
        files.append((default_user, False, "user"))
    if SITE_ENV in env:
        if env[SITE_ENV]:
            files.append((env[SITE_ENV], True, "site"))
    else:
        files.append((SITE_CONFIG, False, "site"))
    return files


def read_layers(env: Mapping[str, str], default_user: str,
                exists: Callable[[str], bool]) -> list[tuple[str, str, dict[str, object]]]:
    """(path, role, settings) of every config file present, highest precedence first.

    `exists` is the caller's cheapest file test (lightos on the fast path), so
    that no parser is imported when there is no file to parse.
    """
    layers = []
    for path, explicit, role in config_files(env, default_user):
        if explicit or exists(path):
            from .configscan import read_config

            layers.append((path, role, read_config(path, explicit)))
    return layers


def from_config_dir(value: str, config_file: str) -> str:
    """A path setting as written in `config_file`: `~` expanded, and a relative path
    (`store = "store"`, `signing-key = "keys/site.secret"`) taken from the file's
    directory, as a site admin who writes it next to the file means it, never from
    the directory whoever runs hdenv happens to be in. URLs are left alone."""
    if value.startswith("/") or "://" in value:
        return value  # the common case, without `os` (see the module doc)
    import os.path

    value = os.path.expanduser(value)
    if os.path.isabs(value) or "://" in value:
        return value
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_file)), value))


def lookup(layers: list[tuple[str, str, dict[str, object]]],
           key: str) -> tuple[object, str] | None:
    """The value of `key` in the first layer that sets it, and that layer's path."""
    for path, _role, data in layers:
        if key in data:
            return data[key], path
    return None
