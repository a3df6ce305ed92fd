"""Settings: site config.toml < user config.toml < HDENV_* environment variables < flags.

Kept free of click so the core and the fast load path can both use it. Each
setting remembers where its value came from (`Settings.sources`), which is
what `hdenv config` prints: on a cluster "why is my store there?" is asked
often, and the answer is one of four places.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .configfiles import from_config_dir, lookup, read_layers
from .configscan import check_whole
from .errors import UserError
from .xdg import user_dir

APP = "hdenv"
DEFAULT = "default"
EXECUTORS = ("local", "slurm")  # where `hdenv build` runs builds


class Settings:
    """Every setting in force. A plain class, not a dataclass: `import dataclasses`
    (which imports `inspect`, `ast`, `dis`) was 15 ms of each bare `hdenv show`,
    `list` and `config`, a third of what Lmod takes for a whole `module avail`."""

    def __init__(
        self,
        *,
        store: Path,
        mirrors: list[str] | None = None,
        jobs: int = 1,  # packages built at once (`-j`)
        build_jobs: int | None = None,  # HDENV_JOBS inside each build; None: share the cores
        sandbox: str = "auto",  # "auto" | "bwrap" | "none"
        jail: bool = True,  # in the sandbox, host dev files a build did not declare are hidden
        strict_links: bool = True,  # undeclared system libraries fail a build
        host_identity: str = "version",  # "version" | "content": host byte hashes in ids
        upstreams: list[Path] | None = None,  # read-only stores below this one
        usage_log: str | None = None,  # "syslog", "file:DIR" or "udp://HOST:PORT"
        config_file: Path | None = None,
        jobs_error: str | None = None,  # a bad jobs setting stops builds, not `list` or `show`
        site_config_file: Path | None = None,
        # setting name (as in config.toml) -> where its value came from: a file,
        # an environment variable, a flag, or "default"
        sources: dict[str, str] | None = None,
        caches: list[str] | None = None,  # binary caches, asked in order
        trusted_keys: list[str] | None = None,  # NAME:BASE64 Ed25519 public keys
        signing_key: str | None = None,  # secret key file `push` signs with
        executor: str = "local",  # where `hdenv build` runs builds: "local" or "slurm"
        slurm_options: list[str] | None = None,  # passed to every sbatch
        executor_error: str | None = None,  # as jobs_error: only `build` cares (FILE: message)
        # config files with `[host.NAME]` tables, the user's first: host software every
        # stack shares (one gcc, one artifact) when it names NAME without declaring it
        host_files: list[Path] | None = None,
        # recipe repositories every stack may use after its own `[stack] repos`: directories
        # (absolute), "builtin", or { git = URL, commit = HEX, path = DIR } tables
        repos: list[Any] | None = None,
    ) -> None:
        self.store = store
        self.mirrors: list[str] = mirrors if mirrors is not None else []
        self.jobs = jobs
        self.build_jobs = build_jobs
        self.sandbox = sandbox
        self.jail = jail
        self.strict_links = strict_links
        self.host_identity = host_identity
        self.upstreams: list[Path] = upstreams if upstreams is not None else []
        self.usage_log = usage_log
        self.config_file = config_file
        self.jobs_error = jobs_error
        self.site_config_file = site_config_file
        self.sources: dict[str, str] = sources if sources is not None else {}
        self.caches: list[str] = caches if caches is not None else []
        self.trusted_keys: list[str] = trusted_keys if trusted_keys is not None else []
        self.signing_key = signing_key
        self.executor = executor
        self.slurm_options: list[str] = slurm_options if slurm_options is not None else []
        self.executor_error = executor_error
        self.host_files: list[Path] = host_files if host_files is not None else []
        self.repos: list[Any] = repos if repos is not None else []

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def check_jobs(self) -> None:
        """For commands that build: a jobs setting that is not a number is an error."""
        if self.jobs_error is not None:
            raise UserError(self.jobs_error)

    def check_executor(self) -> None:
        """For `build`: a bad `executor` or `slurm-options` setting is an error."""
        if self.executor_error is not None:
            raise UserError(self.executor_error)


NOT_SETTINGS = ("config_file", "site_config_file", "sources", "jobs_error", "executor_error",
                "host_files")


def setting_items(settings: Settings) -> list[tuple[str, Any, str]]:
    """(name as in config.toml, value, source) of every setting, for `hdenv config`."""
    out = []
    for name, value in vars(settings).items():  # in the order __init__ sets them
        if name in NOT_SETTINGS:
            continue
        key = name.replace("_", "-")
        out.append((key, value, settings.sources.get(key, DEFAULT)))
    return out


def default_config_file() -> Path:
    return Path(user_dir("config")) / "config.toml"


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


def _or_default(value: object, default: object) -> object:
    """`value`, or `default` where it was not set (None or an empty variable)."""
    return default if value is None or value == "" else value


def _flag(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off", ""):
        return False
    raise UserError(f"{what} must be true or false, got {value!r}")


def default_store() -> Path:
    return Path(user_dir("data"))


def _string_list(raw: object, key: str, source: str) -> list[str]:
    if isinstance(raw, str):
        raw = raw.split()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise UserError(f"'{key}' must be a list of strings", file=source)
    return [str(x) for x in raw]


def _check_usage_log(value: object, source: str) -> None:
    """A bad sink is reported by every command but `load`, which must never fail for it."""
    from .usage import parse

    if not isinstance(value, str):
        raise UserError("'usage-log' must be a string", file=source)
    if value:
        try:
            parse(value)
        except ValueError as e:
            raise UserError(f"usage-log: {e}", file=source) from None


class _Layers:
    """Looks a setting up flag > environment > user file > site file, noting the source."""

    def __init__(self, env: dict[str, str] | os._Environ[str], user_default: Path):
        self.env = env
        self.files = read_layers(env, str(user_default), os.path.exists)
        self.sources: dict[str, str] = {}

    def from_file(self, key: str) -> str | None:
        """The config file `key` came from, or None (a flag, a variable, or unset)."""
        source = self.sources.get(key)
        return source if source in {path for path, _role, _data in self.files} else None

    def path(self, key: str, value: str) -> str:
        """`value` of the path setting `key`: relative to its config file's directory if it
        came from one (configfiles.from_config_dir), else as given (cwd, for a flag)."""
        source = self.from_file(key)
        return from_config_dir(value, source) if source is not None else value

    def get(self, key: str, flag: object = None, flag_name: str = "",
            env_var: str = "") -> object:
        if flag is not None:
            self.sources[key] = flag_name
            return flag
        if env_var and self.env.get(env_var):
            self.sources[key] = env_var
            return self.env[env_var]
        found = lookup(self.files, key)
        if found is None:
            return None
        self.sources[key] = found[1]
        return found[0]


def _repos(layers: _Layers) -> list[Any]:
    """`repos = [...]`: directories relative to their config file, git tables as given."""
    raw = layers.get("repos") or []
    source = layers.sources.get("repos", "")
    if not isinstance(raw, list):
        raise UserError("'repos' must be a list of directories or { git, commit } tables",
                        file=source)
    out: list[Any] = []
    for value in raw:
        if isinstance(value, str) and value != "builtin":
            out.append(str(Path(layers.path("repos", value)).expanduser().absolute()))
        elif isinstance(value, (str, dict)):
            out.append(value)
        else:
            raise UserError(f"'repos' entries must be directories or tables, not {value!r}",
                            file=source)
    return out


def load_settings(
    *, store: str | None = None, jobs: int | None = None, mirrors: list[str] | None = None
) -> Settings:
    """Merge the layers; flags (the keyword arguments) win."""
    env = os.environ
    user_file = Path(env["HDENV_CONFIG"]) if "HDENV_CONFIG" in env else default_config_file()
    layers = _Layers(env, default_config_file())

    store_value = layers.get("store", store, "--store", "HDENV_STORE")
    store_path = (Path(layers.path("store", str(store_value))).expanduser() if store_value
                  else default_store())

    raw_mirrors = layers.get("mirrors", mirrors, "--mirror", "HDENV_MIRRORS") or []
    mirror_list = [layers.path("mirrors", m) for m in
                   _string_list(raw_mirrors, "mirrors", layers.sources.get("mirrors", ""))]

    jobs_error = None
    try:
        jobs_int = _whole_number(layers.get("jobs", jobs, "-j", "HDENV_JOBS") or usable_cores(),
                                 "jobs")
    except UserError as e:
        jobs_int, jobs_error = usable_cores(), e.message
    build_jobs_value = layers.get("build-jobs", None, "", "HDENV_BUILD_JOBS")
    build_jobs = None
    try:
        build_jobs = _whole_number(build_jobs_value, "build-jobs") if build_jobs_value else None
    except UserError as e:
        jobs_error = jobs_error or e.message

    raw_upstreams = layers.get("upstreams") or []
    upstreams = [Path(layers.path("upstreams", u)).expanduser().absolute() for u in
                 _string_list(raw_upstreams, "upstreams", layers.sources.get("upstreams", ""))]
    used = [Path(u) for u in os.environ.get("HDENV_USE", "").split(":") if u.startswith("/")]
    upstreams = [*used, *(u for u in upstreams if u not in used)]  # `hdenv use`: this shell
    usage_log = layers.get("usage-log")
    if usage_log is not None:
        _check_usage_log(usage_log, layers.sources["usage-log"])

    caches = [layers.path("caches", c) for c in
              _string_list(layers.get("caches", None, "", "HDENV_CACHES") or [], "caches",
                           layers.sources.get("caches", ""))]
    trusted_keys = _string_list(layers.get("trusted-keys", None, "", "HDENV_TRUSTED_KEYS") or [],
                                "trusted-keys", layers.sources.get("trusted-keys", ""))
    signing_key = layers.get("signing-key", None, "", "HDENV_SIGNING_KEY")
    if signing_key is not None and not isinstance(signing_key, str):
        raise UserError("'signing-key' must be a string", file=layers.sources["signing-key"])
    if signing_key is not None:
        signing_key = layers.path("signing-key", signing_key)
    executor, executor_error = str(layers.get("executor") or "local"), None
    if executor not in EXECUTORS:
        executor_error = UserError(
            f"'executor' must be one of {', '.join(EXECUTORS)}, got {executor!r}",
            file=layers.sources.get("executor")).render()
    slurm_options = layers.get("slurm-options") or []
    if not isinstance(slurm_options, list) or not all(isinstance(o, str) for o in slurm_options):
        executor_error = UserError("'slurm-options' must be a list of strings",
                                   file=layers.sources.get("slurm-options")).render()
        slurm_options = []

    repos = _repos(layers)
    site = [Path(path) for path, role, _ in layers.files if role == "site"]
    host_files = [Path(p) for p, _role, data in layers.files if "host" in data]
    for host_file in host_files:
        check_whole(str(host_file))
    return Settings(
        host_files=host_files,
        repos=repos,
        executor=executor,
        slurm_options=list(slurm_options),
        executor_error=executor_error,
        store=store_path.absolute(),
        mirrors=mirror_list,
        jobs=jobs_int,
        build_jobs=build_jobs,
        sandbox=_choice(layers.get("sandbox", None, "", "HDENV_SANDBOX") or "auto", "sandbox",
                        ("auto", "bwrap", "none")),
        jail=_flag(_or_default(layers.get("jail", None, "", "HDENV_JAIL"), True), "jail"),
        strict_links=_flag(_or_default(layers.get("strict-links", None, "", "HDENV_STRICT_LINKS"),
                                       True), "strict-links"),
        host_identity=_choice(layers.get("host-identity") or "version", "host-identity",
                              ("version", "content")),
        upstreams=upstreams,
        usage_log=str(usage_log) if usage_log else None,
        config_file=user_file,
        site_config_file=site[0] if site else None,
        sources=layers.sources,
        jobs_error=jobs_error,
        caches=caches,
        trusted_keys=trusted_keys,
        signing_key=signing_key,
    )

