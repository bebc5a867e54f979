"""Exception classes of BEAR: one base class and a few subclasses carrying their context."""

from __future__ import annotations


class BearError(Exception):
    """Base class of every error BEAR raises on purpose; its message is meant for a person."""


class DatabaseLockedError(BearError):
    """The database file is held by another process; ``holder`` names it in words (a Jupyter
    kernel, bear serve, another bear command, a program), ``command`` is its command line, and
    ``url`` is where that process serves it, when it is ``bear serve``."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        pid: int | None,
        command: str | None,
        url: str | None = None,
        holder: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid
        self.command = command
        self.url = url
        self.holder = holder


class SettingError(BearError):
    """A setting was given a value outside what it allows."""

    def __init__(self, message: str, *, name: str, value: object = None) -> None:
        super().__init__(message)
        self.name = name
        self.value = value


class UnknownIdsError(BearError):
    """Billing event ids that do not exist were given."""

    def __init__(self, message: str, *, ids: list[int]) -> None:
        super().__init__(message)
        self.ids = ids


class ImportProblemError(BearError):
    """An import file is malformed; ``problems`` lists file, row, column and problem."""

    def __init__(self, message: str, *, problems: list[dict]) -> None:
        super().__init__(message)
        self.problems = problems


class PluginError(BearError):
    """A plugin or rule definition is invalid (raised at start-up). ``setting`` names the
    stored setting that brought it in (``plugins_dir``, ``rules_file``), if one did."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class RulesFileError(PluginError):
    """The declarative rules file is invalid."""

    def __init__(self, message: str, *, path: str, rule_id: str | None = None) -> None:
        super().__init__(message, setting="rules_file")
        self.path = path
        self.rule_id = rule_id


class InputError(BearError):
    """A filter or argument is malformed or outside its allowed range; ``name`` names it."""

    def __init__(self, message: str, *, name: str, value: object = None) -> None:
        super().__init__(message)
        self.name = name
        self.value = value


class QueryError(BearError):
    """A query given by a user was refused (writing statement, unknown sort column, ...)."""


class AuthError(BearError):
    """Who is asking is not known: no, a wrong or a revoked credential (HTTP 401)."""


class PermissionDeniedError(BearError):
    """The person is known but their role or scopes do not allow this (HTTP 403)."""


class ThrottledError(BearError):
    """Too many failed sign-ins; try again after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(BearError):
    """A run, document, user or token named by its id does not exist (HTTP 404)."""
