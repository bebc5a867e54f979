"""The users and API tokens of a served book, managed through the server's admin routes
(``bear --server URL users …`` / ``tokens …``): the calls ``bear.auth.Team`` answers for a
local book, each one request. The server checks the caller is an admin, applies every rule
of ``Team`` and records the signed-in user as the author (``actor`` is accepted and not sent).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from bear.auth.store import scopes_of
from bear.models import Role, Scopes, User

if TYPE_CHECKING:
    from bear.remote.workspace import RemoteWorkspace


def _user(row: dict[str, Any]) -> User:
    return User(
        id=int(row.get("id") or 0),
        name=row["name"],
        role=Role(row["role"]),
        email=row.get("email"),
        scopes=scopes_of(row.get("scopes") or {}),
        disabled=bool(row.get("disabled")),
    )


class RemoteTeam:
    """``users``, ``add``, ``set_*``, ``disable``, ``tokens``, ``create_token`` and
    ``revoke_token`` of a served book (role ``admin``)."""

    def __init__(self, ws: RemoteWorkspace) -> None:
        self._http = ws._http

    def users(self) -> pd.DataFrame:
        """Every user: name, email, role, scopes (JSON text), disabled."""
        rows = self._http.json("GET", "/users")
        frame = pd.DataFrame(
            [
                {
                    "name": r["name"],
                    "email": r.get("email"),
                    "role": r["role"],
                    "scopes": json.dumps(r.get("scopes") or {}),
                    "disabled": bool(r.get("disabled")),
                }
                for r in rows
            ],
            columns=["name", "email", "role", "scopes", "disabled"],
        )
        return frame

    def add(
        self,
        name: str,
        role: Role | str,
        *,
        actor: str | None = None,
        email: str | None = None,
        password: str | None = None,
        scopes: dict[str, Any] | Scopes | None = None,
    ) -> User:
        body = {
            "name": name,
            "role": str(getattr(role, "value", role)),
            "email": email,
            "password": password,
            "scopes": scopes.as_dict() if isinstance(scopes, Scopes) else scopes,
        }
        return _user(self._http.json("POST", "/users", json=body))

    def _change(self, name: str, **body: Any) -> User:
        return _user(self._http.json("PATCH", f"/users/{quote(str(name), safe='')}", json=body))

    def set_role(self, name: str, role: Role | str, *, actor: str | None = None) -> User:
        return self._change(name, role=str(getattr(role, "value", role)))

    def set_scopes(
        self, name: str, scopes: dict[str, Any] | Scopes | None, *, actor: str | None = None
    ) -> User:
        value = scopes.as_dict() if isinstance(scopes, Scopes) else (scopes or {})
        return self._change(name, scopes=value)

    def set_email(self, name: str, email: str | None, *, actor: str | None = None) -> User:
        return self._change(name, email=email or "")

    def set_password(self, name: str, password: str, *, actor: str | None = None) -> User:
        return self._change(name, password=password)

    def disable(self, name: str, *, actor: str | None = None, disabled: bool = True) -> User:
        return self._change(name, disabled=disabled)

    def tokens(self, name: str | None = None) -> pd.DataFrame:
        """Every API token (never its secret), or one user's."""
        frame = self._http.table("GET", "/tokens")
        if name is not None:
            frame = frame[frame["user"] == name].reset_index(drop=True)
        return frame

    def create_token(
        self, name: str, *, actor: str | None = None, label: str = ""
    ) -> tuple[int, str]:
        made = self._http.json(
            "POST", f"/users/{quote(str(name), safe='')}/tokens", json={"label": label}
        )
        return int(made["id"]), str(made["token"])

    def revoke_token(self, token_id: int, *, actor: str | None = None) -> None:
        self._http.json("DELETE", f"/tokens/{quote(str(token_id), safe='')}")
