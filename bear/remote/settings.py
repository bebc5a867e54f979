"""The settings of a served book, read and changed through the server (``ws.settings`` of a
remote workspace).

Reads go to the server each time (someone else may have changed a value since), writes are
validated by the server's ``Settings`` — the same rules and messages as a local book — and
recorded as made by the signed-in user, whatever ``actor`` a caller passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from bear.config import SETTINGS
from bear.errors import SettingError
from bear.wire import jsonable

if TYPE_CHECKING:
    from bear.remote.http import Http


class RemoteSettings:
    """``settings.name`` reads, ``update(**values)`` writes (all or nothing), ``history()``
    says who changed what — as ``bear.config.Settings`` does for a local book."""

    def __init__(self, http: Http) -> None:
        object.__setattr__(self, "_http", http)

    def describe(self) -> list[dict[str, Any]]:
        """Every setting with its value, default, type, what it allows and its help text."""
        rows: list[dict[str, Any]] = self._http.json("GET", "/settings")
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {row["name"]: row["value"] for row in self.describe()}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = self.as_dict()
        if name in values:
            return values[name]
        raise AttributeError(f"unknown setting {name!r}; known: {', '.join(values)}")

    def __setattr__(self, name: str, value: Any) -> None:
        self.update(**{name: value})

    def __dir__(self) -> list[str]:
        return [*SETTINGS, "update", "update_by", "reset", "history", "as_dict", "describe"]

    def update(self, **values: Any) -> dict[str, Any]:
        """Validate and write every value in one transaction on the server (all or nothing);
        returns them as stored. Needs the ``admin`` role."""
        if not values:
            return {}
        rows = self._http.json("PATCH", "/settings", json={"values": jsonable(values)})
        stored = {row["name"]: row["value"] for row in rows}
        return {name: stored[name] for name in values}

    def update_by(self, actor: str, /, **values: Any) -> dict[str, Any]:
        """``update``: the server records the signed-in user, not ``actor``."""
        return self.update(**values)

    def reset(self, *names: str, actor: str | None = None) -> dict[str, Any]:
        """Put ``names`` back to their defaults (recorded as made by the signed-in user)."""
        defaults = {row["name"]: row["default"] for row in self.describe()}
        unknown = [n for n in names if n not in defaults]
        if unknown:
            raise SettingError(
                f"unknown setting {unknown[0]!r}; known settings: {', '.join(defaults)}",
                name=unknown[0],
            )
        return self.update(**{n: defaults[n] for n in names})

    def history(self, name: str | None = None, *, limit: int | None = None) -> pd.DataFrame:
        """Who changed the settings, newest first: ``changed_at``, ``actor``, ``name``,
        ``old``, ``new``."""
        return self._http.table("GET", "/settings/history", params={"name": name, "limit": limit})

    def __repr__(self) -> str:
        return f"<bear remote settings of {self._http.url}>"
