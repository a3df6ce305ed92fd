"""Error types that map to the exit codes of the contract.

The CLI turns these into one `hdenv: error: ...` line; the core raises them and
never prints, so it can be used without click.
"""

from __future__ import annotations


class HdenvError(Exception):
    """Base class; `exit_code` is what the command line exits with."""

    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        if self.file is not None and self.line is not None:
            return f"{self.file}:{self.line}: {self.message}"
        if self.file is not None:
            return f"{self.file}: {self.message}"
        return self.message


class UserError(HdenvError):
    """The user's input was wrong (bad file, unknown REF, bad option): exit 2."""

    exit_code = 2


class BuildError(HdenvError):
    """A build or check failed: exit 1."""

    exit_code = 1


class StoreError(HdenvError):
    """The store is damaged, or unsafe to write to as it is (a planted symlink, a
    directory other users can write to under a root build): exit 1."""

    exit_code = 1


class DamagedFile(StoreError, ValueError):
    """A store file that is not what hdenv wrote (truncated, edited): exit 1, one line.

    Also a ValueError, so code that treats unreadable JSON as absent still does.
    """


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP stopped hdenv: exit 128 + the signal's number.

    A BaseException, like KeyboardInterrupt, so that no `except Exception`
    (a failed build, a bad file) mistakes it for an ordinary error.
    """

    def __init__(self, signum: int, detail: str = ""):
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        self.name = signal.Signals(signum).name
        self.detail = detail
        super().__init__(signum)

    def __str__(self) -> str:
        return f"interrupted by {self.name}" + (f"; {self.detail}" if self.detail else "")
