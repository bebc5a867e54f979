"""Users and API tokens of a book, and the log of who changed what.

A password or a token is never stored: only its argon2 hash (``pwdlib``'s recommended
parameters). A token reads ``bear_<id>_<secret>``: the id finds its row, the 256-bit secret
is checked against the hash. Checking an argon2 hash takes a few hundred milliseconds on
purpose, so a server keeps the tokens it has verified in memory for ``TOKEN_CACHE_S`` seconds,
keyed by a SHA-256 of the token (never written anywhere); a revocation clears that cache.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
from pwdlib import PasswordHash

from bear.db import Database
from bear.errors import AuthError, BearError, NotFoundError
from bear.models import SCOPE_KINDS, Role, Scopes, User

TOKEN_CACHE_S = 300.0
MIN_PASSWORD = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"']+$")
_TOKEN = re.compile(r"^bear_(\d{1,18})_([A-Za-z0-9_-]{20,100})$")

_hasher = PasswordHash.recommended()
# a hash to verify against when the user does not exist, so both cases take as long
_DUMMY = _hasher.hash("not a password of anyone")


def _role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise BearError(
            f"unknown role {value!r}; roles are {', '.join(r.value for r in Role)}"
        ) from None


def scopes_of(value: Mapping[str, Any] | Scopes | None) -> Scopes:
    """Scopes from a mapping such as ``{"regions": ["EMEA"], "companies": [1]}``, checked."""
    if value is None:
        return Scopes()
    if isinstance(value, Scopes):
        return value
    if not isinstance(value, Mapping):
        raise BearError("scopes must be a mapping of companies, regions, practices, groups")
    unknown = set(value) - set(SCOPE_KINDS)
    if unknown:
        raise BearError(
            f"unknown scope {sorted(unknown)[0]!r}; scopes are {', '.join(SCOPE_KINDS)}"
        )
    out: dict[str, tuple[Any, ...]] = {}
    for kind in SCOPE_KINDS:
        raw = value.get(kind) or ()
        if isinstance(raw, str | int):
            raw = [raw]
        items = list(raw)
        if kind == "companies":
            try:
                ids = tuple(sorted({int(v) for v in items}))
            except (TypeError, ValueError):
                raise BearError(f"scope companies: {items!r} are not company ids") from None
            if any(i <= 0 or i > 2**31 for i in ids):
                raise BearError("scope companies: company ids are positive integers")
            out[kind] = ids
        else:
            texts = tuple(sorted({str(v).strip() for v in items if str(v).strip()}))
            if any(len(t) > 100 or "\x00" in t for t in texts):
                raise BearError(f"scope {kind}: values are names of at most 100 characters")
            out[kind] = texts
    return Scopes(**out)


def _user(row: tuple[Any, ...]) -> User:
    uid, name, email, role, scopes, disabled = row
    return User(
        id=int(uid),
        name=name,
        role=Role(role),
        email=email,
        scopes=scopes_of(json.loads(scopes) if isinstance(scopes, str) else scopes),
        disabled=bool(disabled),
    )


_USER_COLUMNS = "id, name, email, role, scopes, disabled"


class Team:
    """The users and tokens of one book. Every change names its ``actor`` and is logged."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # sha256(token) -> (until, user): every change to a user or token in this process
        # forgets the entries it touches, so a hit is the user as stored now
        self._verified: dict[str, tuple[float, User]] = {}
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------
    def count(self, *, role: Role | str | None = None) -> int:
        """How many enabled users there are (of ``role``)."""
        sql = "SELECT count(*) FROM users WHERE NOT disabled"
        params: list[Any] = []
        if role is not None:
            sql += " AND role = ?"
            params.append(_role(role).value)
        return int(self.db.cursor().execute(sql, params).fetchall()[0][0])

    def get(self, name: str) -> User:
        row = (
            self.db.cursor()
            .execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", [str(name)])
            .fetchall()
        )
        if not row:
            raise NotFoundError(f"no user named {name!r}")
        return _user(row[0])

    def by_id(self, user_id: int) -> User | None:
        row = (
            self.db.cursor()
            .execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", [int(user_id)])
            .fetchall()
        )
        return _user(row[0]) if row else None

    def users(self) -> pd.DataFrame:
        """Every user: name, email, role, scopes, disabled, created_at, created_by."""
        frame = (
            self.db.cursor()
            .sql(
                "SELECT name, email, role, scopes::VARCHAR AS scopes, disabled, created_at, "
                "created_by FROM users ORDER BY name"
            )
            .df()
        )
        return frame

    def tokens(self, name: str | None = None) -> pd.DataFrame:
        """API tokens (never their secret): id, user, label, created, last used, revoked."""
        sql = (
            "SELECT t.id, u.name AS user, t.label, t.created_at, t.created_by, t.last_used_at, "
            "t.revoked_at, t.revoked_by FROM api_tokens t JOIN users u ON u.id = t.user_id"
        )
        params: list[Any] = []
        if name is not None:
            sql += " WHERE u.name = ?"
            params.append(self.get(name).name)
        return self.db.cursor().sql(sql + " ORDER BY t.id", params=params).df()

    def changes(self, kind: str | None = None, target: str | None = None) -> pd.DataFrame:
        """The change log, newest first: changed_at, actor, kind, target, old, new."""
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        sql = (
            "SELECT id, changed_at, actor, kind, target, old_value::VARCHAR AS old_value, "
            "new_value::VARCHAR AS new_value FROM change_log"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.db.cursor().sql(sql + " ORDER BY id DESC", params=params).df()

    # -- changing --------------------------------------------------------------------------
    def log(self, cur: Any, actor: str, kind: str, target: str, old: Any, new: Any) -> None:
        """Record a change inside the caller's transaction."""
        cur.execute(
            "INSERT INTO change_log (actor, kind, target, old_value, new_value) "
            "VALUES (?, ?, ?, ?::JSON, ?::JSON)",
            [actor, kind, target, json.dumps(old, default=str), json.dumps(new, default=str)],
        )

    def add(
        self,
        name: str,
        role: Role | str,
        *,
        actor: str,
        email: str | None = None,
        password: str | None = None,
        scopes: Mapping[str, Any] | Scopes | None = None,
    ) -> User:
        """Add a user; ``password`` (at least ``MIN_PASSWORD`` characters) lets them sign in to
        the dashboard, a token (``create_token``) lets them use the API."""
        name = str(name).strip()
        if not _NAME.match(name):
            raise BearError(f"user name {name!r}: use 1–64 letters, digits, '.', '_', '@' or '-'")
        role = _role(role)
        if email is not None and email != "" and not _EMAIL.match(str(email)):
            raise BearError(f"{email!r} is not an e-mail address")
        scope = scopes_of(scopes)
        hashed = self._hash_password(password) if password is not None else None
        with self.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchall():
                raise BearError(f"a user named {name!r} exists already")
            if role is not Role.ADMIN and not tx.execute("SELECT 1 FROM users").fetchall():
                raise BearError(
                    "the first user must be an admin (they manage the others): "
                    f"add one with role admin before {name!r}"
                )
            tx.execute(
                "INSERT INTO users (name, email, role, scopes, password_hash, created_by) "
                "VALUES (?, ?, ?, ?::JSON, ?, ?)",
                [name, email or None, role.value, json.dumps(scope.as_dict()), hashed, actor],
            )
            self.log(tx, actor, "user", name, None, {"role": role.value, "scopes": scope.as_dict()})
        return self.get(name)

    def _hash_password(self, password: str) -> str:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise BearError(f"a password needs at least {MIN_PASSWORD} characters")
        if len(password) > 1024 or "\x00" in password:
            raise BearError("a password has at most 1024 characters and no NUL")
        return _hasher.hash(password)

    def _change(self, name: str, actor: str, column: str, value: Any, shown: Any) -> User:
        before = self.get(name)
        with self.db.transaction() as tx:
            tx.execute(f"UPDATE users SET {column} = ? WHERE name = ?", [value, before.name])
            old = {
                "role": before.role.value,
                "disabled": before.disabled,
                "scopes": before.scopes.as_dict(),
                "email": before.email,
            }[column]
            self.log(tx, actor, "user", before.name, {column: old}, {column: shown})
            if column in ("role", "disabled"):
                self._guard_last_admin(tx)
        self._forget(before.id)
        return self.get(name)

    def _guard_last_admin(self, tx: Any) -> None:
        admins = tx.execute(
            "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled"
        ).fetchall()[0][0]
        others = tx.execute("SELECT count(*) FROM users").fetchall()[0][0]
        if others and not admins:
            raise BearError("that would leave no enabled admin; make another user admin first")

    def set_role(self, name: str, role: Role | str, *, actor: str) -> User:
        role = _role(role)
        return self._change(name, actor, "role", role.value, role.value)

    def set_scopes(
        self, name: str, scopes: Mapping[str, Any] | Scopes | None, *, actor: str
    ) -> User:
        scope = scopes_of(scopes)
        return self._change(name, actor, "scopes", json.dumps(scope.as_dict()), scope.as_dict())

    def set_email(self, name: str, email: str | None, *, actor: str) -> User:
        if email and not _EMAIL.match(str(email)):
            raise BearError(f"{email!r} is not an e-mail address")
        return self._change(name, actor, "email", email or None, email or None)

    def disable(self, name: str, *, actor: str, disabled: bool = True) -> User:
        return self._change(name, actor, "disabled", disabled, disabled)

    def set_password(self, name: str, password: str, *, actor: str) -> User:
        user = self.get(name)
        hashed = self._hash_password(password)
        with self.db.transaction() as tx:
            tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", [hashed, user.id])
            self.log(tx, actor, "user", user.name, None, {"password": "changed"})
        return user

    # -- signing in ------------------------------------------------------------------------
    def authenticate(self, name: str, password: str) -> User:
        """The user whose name and password these are; ``AuthError`` otherwise (the same
        message, and about the same time, whether the name or the password is wrong)."""
        row = (
            self.db.cursor()
            .execute(
                f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE name = ?",
                [str(name)[:200]],
            )
            .fetchall()
        )
        stored = row[0][-1] if row else None
        try:
            ok = _hasher.verify(str(password)[:1024], stored or _DUMMY)
        except Exception:  # a malformed stored hash
            ok = False
        if not row or stored is None or not ok:
            raise AuthError("wrong user name or password")
        user = _user(row[0][:-1])
        if user.disabled:
            raise AuthError("wrong user name or password")
        return user

    def create_token(self, name: str, *, actor: str, label: str = "") -> tuple[int, str]:
        """A new API token for ``name``: (token id, the token). The token is shown only now."""
        user = self.get(name)
        if user.disabled:
            raise BearError(f"user {user.name!r} is disabled")
        label = str(label)[:100]
        secret = secrets.token_urlsafe(32)
        with self.db.transaction() as tx:
            tid = tx.execute(
                "INSERT INTO api_tokens (user_id, label, token_hash, created_by) "
                "VALUES (?, ?, ?, ?) RETURNING id",
                [user.id, label, "pending", actor],
            ).fetchall()[0][0]
            token = f"bear_{tid}_{secret}"
            tx.execute(
                "UPDATE api_tokens SET token_hash = ? WHERE id = ?", [_hasher.hash(token), tid]
            )
            self.log(tx, actor, "token", str(tid), None, {"user": user.name, "label": label})
        return int(tid), token

    def revoke_token(self, token_id: int, *, actor: str) -> None:
        try:
            tid = int(token_id)
        except (TypeError, ValueError):
            raise BearError(f"{token_id!r} is not a token id") from None
        with self.db.transaction() as tx:
            row = tx.execute("SELECT revoked_at FROM api_tokens WHERE id = ?", [tid]).fetchall()
            if not row:
                raise NotFoundError(f"no token {tid}")
            if row[0][0] is not None:
                return
            tx.execute(
                "UPDATE api_tokens SET revoked_at = current_timestamp, revoked_by = ? WHERE id = ?",
                [actor, tid],
            )
            self.log(tx, actor, "token", str(tid), None, {"revoked": True})
        with self._lock:
            self._verified.clear()

    def token_user(self, token: str) -> User:
        """The enabled user an unrevoked ``token`` belongs to; ``AuthError`` otherwise."""
        match = _TOKEN.match(str(token or "").strip())
        if not match:
            raise AuthError("not a BEAR API token")
        digest = hashlib.sha256(match.group(0).encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._verified.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = (
            self.db.cursor()
            .execute(
                "SELECT t.user_id, t.token_hash FROM api_tokens t "
                "WHERE t.id = ? AND t.revoked_at IS NULL",
                [int(match.group(1))],
            )
            .fetchall()
        )
        ok = False
        if row:
            try:
                ok = _hasher.verify(match.group(0), row[0][1])
            except Exception:
                ok = False
        else:
            _hasher.verify(match.group(0), _DUMMY)
        user = self.by_id(row[0][0]) if ok else None
        if user is None or user.disabled:
            raise AuthError("unknown or revoked API token")
        with self._lock:
            self._verified[digest] = (now + TOKEN_CACHE_S, user)
        return user

    def _forget(self, user_id: int) -> None:
        with self._lock:
            for key, (_, user) in list(self._verified.items()):
                if user.id == user_id:
                    del self._verified[key]
