"""Settings: config.toml < HDENV_* environment variables < command-line flags.

Kept free of click so the core and the fast load path can both use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .configscan import read_config
from .errors import UserError

APP = "hdenv"


@dataclass
class Settings:
    store: Path
    mirrors: list[str] = field(default_factory=list)
    jobs: int = 1  # packages built at once (`-j`)
    build_jobs: int | None = None  # HDENV_JOBS inside each build; None: share the cores
    sandbox: str = "auto"  # "auto" | "bwrap" | "none"
    strict_links: bool = False  # undeclared system libraries fail a build
    host_identity: str = "version"  # "version" | "content": host byte hashes in ids
    config_file: Path | None = None
    jobs_error: str | None = None  # a bad jobs setting stops builds, not `list` or `show`

    def check_jobs(self) -> None:
        """For commands that build: a jobs setting that is not a number is an error."""
        if self.jobs_error is not None:
            raise UserError(self.jobs_error)


def default_config_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def usable_cores() -> int:
    """Cores this process may run on: a batch job's allocation, not the whole node."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - macOS has no affinity call
        return os.cpu_count() or 1


def _whole_number(value: object, what: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise UserError(f"{what} must be a whole number, got {value!r}") from None
    if number < 1:
        raise UserError(f"{what} must be at least 1, got {number}")
    return number


def _choice(value: object, what: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _flag(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off", ""):
        return False
    raise UserError(f"{what} must be true or false, got {value!r}")


def default_store() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP))


def load_settings(
    *, store: str | None = None, jobs: int | None = None, mirrors: list[str] | None = None
) -> Settings:
    """Merge the three layers; flags (the keyword arguments) win."""
    env = os.environ
    explicit = "HDENV_CONFIG" in env
    cfg_path = Path(env["HDENV_CONFIG"]) if explicit else default_config_file()
    cfg = read_config(str(cfg_path), explicit)

    store_value = store or env.get("HDENV_STORE") or cfg.get("store")
    store_path = Path(str(store_value)).expanduser() if store_value else default_store()

    mirror_list: list[str]
    if mirrors is not None:
        mirror_list = list(mirrors)
    elif env.get("HDENV_MIRRORS"):
        mirror_list = env["HDENV_MIRRORS"].split()
    else:
        raw = cfg.get("mirrors", [])
        if isinstance(raw, str):
            raw = raw.split()
        if not isinstance(raw, list):
            raise UserError("'mirrors' must be a list of strings", file=str(cfg_path))
        mirror_list = [str(m) for m in raw]

    jobs_error = None
    try:
        jobs_int = _whole_number(jobs or env.get("HDENV_JOBS") or cfg.get("jobs")
                                 or usable_cores(), "jobs")
    except UserError as e:
        jobs_int, jobs_error = usable_cores(), e.message
    build_jobs_value = env.get("HDENV_BUILD_JOBS") or cfg.get("build-jobs")
    build_jobs = None
    try:
        build_jobs = _whole_number(build_jobs_value, "build-jobs") if build_jobs_value else None
    except UserError as e:
        jobs_error = jobs_error or e.message

    return Settings(
        store=store_path.absolute(),
        mirrors=mirror_list,
        jobs=jobs_int,
        build_jobs=build_jobs,
        sandbox=_choice(env.get("HDENV_SANDBOX") or cfg.get("sandbox", "auto"), "sandbox",
                        ("auto", "bwrap", "none")),
        strict_links=_flag(env.get("HDENV_STRICT_LINKS") or cfg.get("strict-links", False),
                           "strict-links"),
        host_identity=_choice(cfg.get("host-identity", "version"), "host-identity",
                              ("version", "content")),
        config_file=cfg_path,
        jobs_error=jobs_error,
    )
