"""Every error a user can see, rooted at LwrecipeError.

Each class carries its context and its exit status (DESIGN.md: 1 a build or
command failed, 2 usage or recipe error, 3 an integrity failure). The CLI prints
`error: <where>: <what>` and never a traceback; this module prints nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3


class LwrecipeError(Exception):
    """Root of every user-facing error."""

    exit_code: int = EXIT_FAILED
    reason: str = "failed"
    temporary: bool = False

    def lines(self) -> list[str]:
        """The message as one or more `<where>: <what>` lines."""
        return [str(self)]


class UsageError(LwrecipeError):
    exit_code = EXIT_USAGE
    reason = "usage"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of a recipe."""

    field: str
    message: str

    def render(self, path: str) -> str:
        return f"{path}: {self.field}: {self.message}" if self.field else f"{path}: {self.message}"


class RecipeError(LwrecipeError):
    """A recipe file that cannot be used; lists every problem found in it."""

    exit_code = EXIT_USAGE
    reason = "recipe"

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__(self.problems[0].render(path))

    @classmethod
    def one(cls, path: str, field: str, message: str) -> RecipeError:
        return cls(path, [Problem(field, message)])

    def lines(self) -> list[str]:
        return [p.render(self.path) for p in self.problems]


class DocumentError(LwrecipeError):
    """A file or a remote's document that cannot be read as one: too large, not
    UTF-8, not valid TOML or JSON, nested too deep, or lacking a field."""

    exit_code = EXIT_USAGE
    reason = "document"

    def __init__(self, where: str, message: str, field: str = "") -> None:
        self.where, self.message, self.field = where, message, field
        super().__init__(Problem(field, message).render(where))


class GraphError(LwrecipeError):
    """A missing dependency or a dependency cycle."""

    exit_code = EXIT_USAGE
    reason = "graph"


class MissingToolError(LwrecipeError):
    """A host tool a recipe declares is not on this machine."""

    reason = "missing-tool"

    def __init__(self, recipe: str, tool: str, package: str | None, where: str = "on PATH") -> None:
        self.recipe, self.tool, self.package = recipe, tool, package
        hint = f" (Debian package: {package})" if package else ""
        super().__init__(f"{recipe}: host tool {tool!r} not found {where}{hint}")


class IntegrityError(LwrecipeError):
    """A hash or signature did not match, or a lock drifted."""

    exit_code = EXIT_INTEGRITY
    reason = "integrity"


class HashMismatch(IntegrityError):
    reason = "hash-mismatch"

    def __init__(self, where: str, expected: str, actual: str) -> None:
        self.where, self.expected, self.actual = where, expected, actual
        super().__init__(f"{where}: sha256 mismatch: expected {expected}, got {actual}")


class FetchError(LwrecipeError):
    """A source could not be obtained from any location."""

    reason = "fetch"

    def __init__(self, where: str, attempts: Sequence[str]) -> None:
        self.where, self.attempts = where, tuple(attempts)
        super().__init__(f"{where}: could not be fetched from any location")

    def lines(self) -> list[str]:
        return [str(self)] + [f"  {a}" for a in self.attempts]


class FetchIntegrityError(IntegrityError):
    """Every location served bytes with the wrong hash."""

    reason = "fetch-integrity"

    def __init__(self, where: str, attempts: Sequence[str]) -> None:
        self.where, self.attempts = where, tuple(attempts)
        super().__init__(f"{where}: no location served the pinned bytes")

    def lines(self) -> list[str]:
        return [str(self)] + [f"  {a}" for a in self.attempts]


class OfflineMissing(LwrecipeError):
    reason = "offline"


class UnsafeArchive(IntegrityError):
    """An archive or patch that would write outside its tree or create special files."""

    reason = "unsafe-archive"


class BuildFailed(LwrecipeError):
    reason = "build"

    def __init__(self, recipe: str, message: str, log_path: str | None = None, tail: str = "") -> None:
        self.recipe, self.log_path, self.tail = recipe, log_path, tail
        super().__init__(f"{recipe}: {message}")


class NotReproducible(IntegrityError):
    """`build --check` rebuilt a recipe to different bytes."""

    reason = "not-reproducible"

    def __init__(self, recipe: str, first: str, second: str, report: Sequence[str]) -> None:
        self.recipe, self.report, self.first, self.second = recipe, tuple(report), first, second
        super().__init__(f"{recipe}: not reproducible: output {first[:12]} rebuilt as {second[:12]}")

    def lines(self) -> list[str]:
        return [str(self)] + [f"  {line}" for line in self.report]


class LockDrift(IntegrityError):
    """`--locked`: inputs or outputs differ from the lockfile."""

    reason = "lock-drift"

    def __init__(self, lockfile: str, changes: Sequence[str]) -> None:
        self.changes = tuple(changes)
        super().__init__(f"{lockfile}: --locked: {len(self.changes)} difference(s) from the lockfile")

    def lines(self) -> list[str]:
        return [str(self)] + list(self.changes)


class RemoteError(LwrecipeError):
    """A remote cache could not be read or written."""

    reason = "remote"


class StoreError(LwrecipeError):
    """The cache could not be written (disk full, permissions, ...)."""

    reason = "store"


class SandboxUnavailable(LwrecipeError):
    reason = "sandbox"


class ErrorGroup(LwrecipeError):
    """Several independent failures of one run, all reported at once."""

    def __init__(self, errors: Sequence[LwrecipeError]) -> None:
        self.errors = tuple(errors)
        self.exit_code = max(e.exit_code for e in self.errors)
        self.reason = self.errors[0].reason
        super().__init__(str(self.errors[0]))

    def lines(self) -> list[str]:
        return [line for e in self.errors for line in e.lines()]


# The userinfo of any URL, with or without a scheme before its `://`. The password runs
# to the last `@` before the next `/` or space, so one with an unencoded `@`, quote or
# `?` in it is hidden whole. A match starts only at a `://` and cannot run past the next
# `/`, so a long text is scanned in linear time.
_USERINFO = re.compile(r"(?P<user>://[^\s/@:]*:)[^\s/]*@")


def redact(text: str) -> str:
    """A message with the password of every URL in it replaced (`http://user:***@host`):
    proxy and remote URLs may carry credentials, and messages reach logs and CI output."""
    return _USERINFO.sub(r"\g<user>***@", text)


def raise_all(errors: Sequence[LwrecipeError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ErrorGroup(errors)
