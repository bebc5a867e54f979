"""Settings: typed, validated, persisted in the ``settings`` table of the database.

Each setting is declared once in ``SETTINGS`` with its type, default and what it allows; the
API (``ws.settings``), the CLI (``bear settings``) and the dashboard all read that table.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from bear.errors import BearError, SettingError

if TYPE_CHECKING:
    import pandas as pd

# Who a change is recorded as made by when the caller does not say (``Settings.update``).
LOCAL_ACTOR = "local"

EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
RULE_ID_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9_]+$")
URL_RE = re.compile(r"^https?://[^\s/?#]+(?:/[^\s?#]*)?$")


def is_email(value: str) -> bool:
    """True for a single plain address (no display name, no line breaks, no commas)."""
    return isinstance(value, str) and len(value) <= 254 and bool(EMAIL_RE.fullmatch(value))


@dataclass(frozen=True)
class SettingDef:
    name: str
    kind: str  # int, float, bool, str, choice, emails, rule_ids, url, email, path
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # True when a change can change a rule's verdict: the rule registry is rebuilt (and
    # checked before the value is saved) and cached eligibility is dropped.
    affects_rules: bool = False
    # True for a setting that loads code or files of the server: it is set when BEAR starts
    # (``bear serve --plugins-dir``, or the CLI / Python API while nothing serves the book),
    # never by a person using a running server (``Settings.lock_startup``).
    startup: bool = False

    def allowed(self) -> str:
        if self.kind in ("int", "float"):
            lo = "" if self.minimum is None else f"≥ {self.minimum:g}"
            hi = "" if self.maximum is None else f"≤ {self.maximum:g}"
            word = "an integer" if self.kind == "int" else "a number"
            return f"{word} {' and '.join(p for p in (lo, hi) if p)}".strip()
        return {
            "bool": "true or false",
            "str": "text",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
            "emails": "a list of e-mail addresses (name@example.com)",
            "rule_ids": "a list of rule ids such as release.not_approved",
            "url": "an http:// or https:// address without query string",
            "email": "one e-mail address (name@example.com)",
            "path": "a file or folder path, or empty",
        }[self.kind]

    def coerce(self, value: Any) -> Any:
        """Return the validated value, or raise ``SettingError`` naming setting, value and rule."""
        bad = SettingError(
            f"setting {self.name!r}: {value!r} is not allowed; expected {self.allowed()}",
            name=self.name,
            value=value,
        )
        kind = self.kind
        if kind in ("int", "float"):
            if isinstance(value, bool):
                raise bad
            if isinstance(value, str):
                try:
                    value = int(value.strip()) if kind == "int" else float(value.strip())
                except ValueError:
                    raise bad from None
            if kind == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)
            if kind == "int" and not isinstance(value, int):
                raise bad
            if kind == "float" and not isinstance(value, int | float):
                raise bad
            if kind == "float":
                value = float(value)
                if value != value:  # NaN
                    raise bad
            if self.minimum is not None and value < self.minimum:
                raise bad
            if self.maximum is not None and value > self.maximum:
                raise bad
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
                return False
            raise bad
        if kind in ("emails", "rule_ids"):
            if isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    try:
                        value = json.loads(text)
                    except ValueError:
                        raise bad from None
                else:
                    value = [p.strip() for p in re.split(r"[,;\s]+", text) if p.strip()]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise bad
            check = is_email if kind == "emails" else (lambda v: bool(RULE_ID_RE.fullmatch(v)))
            wrong = [v for v in value if not check(v)]
            if wrong:
                raise SettingError(
                    f"setting {self.name!r}: {wrong[0]!r} is not allowed; expected {self.allowed()}",
                    name=self.name,
                    value=value,
                )
            return list(dict.fromkeys(value))
        if not isinstance(value, str):
            raise bad
        if any(ch in value for ch in "\r\n\0"):
            raise bad
        value = value.strip()
        if kind == "choice" and value not in self.choices:
            raise bad
        if kind == "url":
            value = value.rstrip("/")
            if not URL_RE.fullmatch(value):
                raise bad
        if kind == "email" and not is_email(value):
            raise bad
        if kind == "str" and self.maximum is not None and len(value) > self.maximum:
            raise bad
        return value


SETTINGS: dict[str, SettingDef] = {
    d.name: d
    for d in (
        SettingDef(
            "release_batch_size",
            "int",
            200,
            "Events released per transaction; a batch is all-or-nothing.",
            1,
            100_000,
        ),
        SettingDef(
            "validation_limit",
            "int",
            1_000_000,
            "Largest selection validated before a run starts (the warning dialog).",
            0,
            100_000_000,
        ),
        SettingDef(
            "release_failure_mode",
            "choice",
            "batch",
            "'batch': one bad event fails its batch; 'isolate': failed batches are split until only the culprits stay unreleased.",
            choices=("batch", "isolate"),
        ),
        SettingDef(
            "additional_notification_recipients",
            "emails",
            [],
            "Extra addresses that get the invoicing-finished e-mail, one e-mail each.",
        ),
        SettingDef(
            "max_lines_per_document",
            "int",
            500,
            "Most lines a sales invoice or credit note may hold.",
            1,
            100_000,
            affects_rules=True,
        ),
        SettingDef(
            "require_approval",
            "bool",
            True,
            "Only approved billing events can be released.",
            affects_rules=True,
        ),
        SettingDef(
            "base_url",
            "url",
            "http://127.0.0.1:5006",
            "Address of the dashboard, used for links in e-mails.",
        ),
        SettingDef(
            "smtp_host",
            "str",
            "",
            "SMTP server for e-mail; empty keeps e-mails in the outbox.",
            maximum=253,
        ),
        SettingDef("smtp_port", "int", 25, "SMTP server port.", 1, 65535),
        SettingDef(
            "smtp_sender", "email", "bear@localhost.localdomain", "From address of e-mails."
        ),
        SettingDef("smtp_starttls", "bool", False, "Use STARTTLS with the SMTP server."),
        SettingDef(
            "smtp_username",
            "str",
            "",
            "SMTP user name; the password comes from $BEAR_SMTP_PASSWORD and is never stored.",
            maximum=256,
        ),
        SettingDef(
            "disabled_rules",
            "rule_ids",
            [],
            "Rule ids that are not evaluated.",
            affects_rules=True,
        ),
        SettingDef(
            "rules_file",
            "path",
            "",
            "A TOML file of rules written without code (set at start-up).",
            affects_rules=True,
            startup=True,
        ),
        SettingDef(
            "plugins_dir",
            "path",
            "",
            "A folder of .py plugin files loaded at start-up (set at start-up).",
            affects_rules=True,
            startup=True,
        ),
        SettingDef(
            "rule_timeout_s",
            "float",
            10.0,
            "Seconds a rule may take before it fails closed.",
            0.01,
            3600,
        ),
    )
}

RULE_SETTINGS = frozenset(n for n, d in SETTINGS.items() if d.affects_rules)
STARTUP_SETTINGS = frozenset(n for n, d in SETTINGS.items() if d.startup)
SMTP_SETTINGS = frozenset(n for n in SETTINGS if n.startswith("smtp_"))


def check_combination(proposed: SettingsSnapshot, changed: Mapping[str, Any]) -> None:
    """Rules across settings, checked before any write: SMTP credentials travel only over TLS."""
    if proposed.smtp_username and not proposed.smtp_starttls:
        name = "smtp_starttls" if "smtp_starttls" in changed else "smtp_username"
        raise SettingError(
            f"setting {name!r}: an SMTP user name is only sent over TLS; turn smtp_starttls on "
            "first (or clear smtp_username to send without signing in)",
            name=name,
            value=changed.get(name),
        )


@dataclass(frozen=True)
class SettingsSnapshot:
    """Every setting's value at one moment, typed: what rules, stages and notifiers receive.

    ``Settings.snapshot()`` makes one; a run stores its snapshot as JSON when it is queued and
    reloads it (``from_json``) when it executes or resumes, so a run keeps the settings it was
    started with. Fields are the names of ``SETTINGS`` (a test keeps the two in step).
    """

    release_batch_size: int = 200
    validation_limit: int = 1_000_000
    release_failure_mode: str = "batch"
    additional_notification_recipients: tuple[str, ...] = ()
    max_lines_per_document: int = 500
    require_approval: bool = True
    base_url: str = "http://127.0.0.1:5006"
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_sender: str = "bear@localhost.localdomain"
    smtp_starttls: bool = False
    smtp_username: str = ""
    disabled_rules: tuple[str, ...] = ()
    rules_file: str = ""
    plugins_dir: str = ""
    rule_timeout_s: float = 10.0

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> SettingsSnapshot:
        """A snapshot of already validated values (lists become tuples); unknown names ignored."""
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        )

    def with_values(self, **values: Any) -> SettingsSnapshot:
        """This snapshot with ``values`` validated and applied (raises ``SettingError``)."""
        clean = Settings.validate(values)
        return replace(
            self, **{k: tuple(v) if isinstance(v, list) else v for k, v in clean.items()}
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), as stored in the database and shown to users."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    @classmethod
    def from_json(cls, raw: str | None, fallback: SettingsSnapshot) -> SettingsSnapshot:
        """The snapshot stored as ``raw``; a setting it lacks (added since) or that no longer
        validates takes its value from ``fallback``."""
        try:
            stored = json.loads(raw) if raw else {}
        except ValueError:
            stored = {}
        values = fallback.as_dict()
        for name, value in (stored if isinstance(stored, dict) else {}).items():
            if name in SETTINGS:
                # a stored value that no longer validates keeps the fallback's value
                with contextlib.suppress(SettingError):
                    values[name] = SETTINGS[name].coerce(value)
        return cls.of(values)


class Settings:
    """The settings of one database: ``settings.name`` reads, ``settings.update(...)`` and
    ``settings.update_by(actor, ...)`` write, ``settings.history()`` says who changed what."""

    def __init__(self, db: Any, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        object.__setattr__(self, "_db", db)
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_write_lock", threading.RLock())
        object.__setattr__(self, "_listeners", [on_change] if on_change else [])
        object.__setattr__(self, "_validators", [])
        object.__setattr__(self, "_snapshot", None)
        object.__setattr__(self, "_startup_locked", False)
        self.reload()

    def reload(self) -> None:
        rows = self._db.cursor().execute("SELECT key, value FROM settings").fetchall()
        stored = {k: json.loads(v) for k, v in rows}
        values = {}
        for name, d in SETTINGS.items():
            try:
                values[name] = d.coerce(stored[name]) if name in stored else d.default
            except SettingError:
                values[name] = d.default  # a value written by hand that no longer validates
        with self._lock:
            self._values.clear()
            self._values.update(values)
            object.__setattr__(self, "_snapshot", None)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}")

    def __setattr__(self, name: str, value: Any) -> None:
        self.update(**{name: value})

    def __dir__(self) -> list[str]:
        return [
            *SETTINGS,
            *("update", "update_by", "reset", "history", "as_dict", "snapshot", "reload"),
            *("validate", "describe", "lock_startup"),
        ]

    def lock_startup(self) -> None:
        """Refuse changes to start-up settings from now on (``bear serve`` calls this once it
        has applied its own ``--plugins-dir`` / ``--rules-file``)."""
        object.__setattr__(self, "_startup_locked", True)

    @property
    def startup_locked(self) -> bool:
        return bool(self._startup_locked)

    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.append(fn)

    def add_validator(self, fn: Callable[[SettingsSnapshot, dict[str, Any]], None]) -> None:
        """``fn(new_snapshot, changed_values)`` runs before a write and may raise to refuse it."""
        self._validators.append(fn)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def snapshot(self) -> SettingsSnapshot:
        """The current values as one typed, immutable ``SettingsSnapshot``."""
        with self._lock:
            snap = self._snapshot
            if snap is None:
                snap = SettingsSnapshot.of(self._values)
                object.__setattr__(self, "_snapshot", snap)
            return snap

    def describe(self) -> list[dict[str, Any]]:
        """Every setting with its value, default, type, what it allows and its help text."""
        values = self.as_dict()
        return [
            {
                "name": d.name,
                "value": values[d.name],
                "default": d.default,
                "kind": d.kind,
                "allowed": d.allowed(),
                "help": d.help,
                "startup": d.startup,
                "editable": not (d.startup and self._startup_locked),
            }
            for d in SETTINGS.values()
        ]

    @staticmethod
    def validate(values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate all values (unknown names included) and return them coerced, or raise."""
        out = {}
        for name, value in values.items():
            if name not in SETTINGS:
                raise SettingError(
                    f"unknown setting {name!r}; known settings: {', '.join(SETTINGS)}",
                    name=name,
                    value=value,
                )
            out[name] = SETTINGS[name].coerce(value)
        return out

    def update(self, **values: Any) -> dict[str, Any]:
        """Validate every value first, then write them all in one transaction (all-or-nothing).
        The change is recorded as made by ``"local"``; ``update_by`` names who made it."""
        return self.update_by(LOCAL_ACTOR, **values)

    def update_by(self, actor: str, /, **values: Any) -> dict[str, Any]:
        """``update`` on behalf of ``actor`` (a user's name, ``local:<os user>`` for the CLI).

        In the transaction that writes the values, every setting whose value changes gets one
        row in ``change_log`` (kind ``setting``: old, new, who, when; see ``history``), and a
        change of ``disabled_rules`` also one row per rule turned off or on (kind ``rule``,
        target the rule id, ``{"enabled": bool}``). ``actor`` is positional-only, so no
        setting name can clash with it. A refused update writes and records nothing.
        """
        actor = _actor(actor)
        clean = self.validate(values)
        if not clean:
            return {}
        locked = sorted(STARTUP_SETTINGS & set(clean)) if self._startup_locked else []
        if locked:
            raise SettingError(
                f"setting {locked[0]!r} is set when BEAR starts, not while it serves the book: "
                f"stop the server and run `bear settings set {locked[0]}=…`, or start it with "
                f"`bear serve --{locked[0].replace('_', '-')} …`",
                name=locked[0],
                value=clean[locked[0]],
            )
        # One update at a time in this process (the process owns the book), so the old values
        # recorded are the values this write replaces.
        with self._write_lock:
            before = self.as_dict()
            proposed = self.snapshot().with_values(**clean)
            check_combination(proposed, clean)
            for check in list(self._validators):
                check(proposed, clean)
            changed = {k: v for k, v in clean.items() if before.get(k) != v}
            log_rows = _log_rows(before, changed)
            with self._db.transaction() as cur:
                cur.execute(
                    "INSERT OR REPLACE INTO settings (key, value, updated_at) "
                    "SELECT k, v::JSON, current_timestamp FROM (SELECT unnest($keys) AS k, unnest($vals) AS v)",
                    {"keys": list(clean), "vals": [json.dumps(v) for v in clean.values()]},
                )
                if log_rows:
                    kinds, targets, olds, news = (list(c) for c in zip(*log_rows, strict=True))
                    cur.execute(
                        "INSERT INTO change_log (actor, kind, target, old_value, new_value) "
                        "SELECT $actor, kind, target, old::JSON, new::JSON FROM (SELECT "
                        "unnest($kinds) AS kind, unnest($targets) AS target, "
                        "unnest($olds) AS old, unnest($news) AS new)",
                        {
                            "actor": actor,
                            "kinds": kinds,
                            "targets": targets,
                            "olds": olds,
                            "news": news,
                        },
                    )
            with self._lock:
                self._values.update(clean)
                object.__setattr__(self, "_snapshot", None)
        for fn in list(self._listeners):
            fn(changed)
        return clean

    def reset(self, *names: str, actor: str = LOCAL_ACTOR) -> dict[str, Any]:
        """Put ``names`` back to their defaults (validated, stored and recorded like
        ``update_by(actor, ...)``)."""
        self.validate({n: SETTINGS[n].default if n in SETTINGS else None for n in names})
        return self.update_by(actor, **{n: SETTINGS[n].default for n in names})

    def history(self, name: str | None = None, *, limit: int | None = None) -> pd.DataFrame:
        """Who changed the settings, newest first: ``changed_at``, ``actor``, ``name``, ``old``,
        ``new`` (the values as the setting holds them). ``name`` keeps one setting's changes;
        ``limit`` keeps the newest ``limit`` rows."""
        import pandas as pd

        sql = (
            "SELECT changed_at, actor, target AS name, old_value::VARCHAR AS old, "
            "new_value::VARCHAR AS new FROM change_log WHERE kind = 'setting'"
        )
        params: list[Any] = []
        if name is not None:
            if name not in SETTINGS:
                raise SettingError(
                    f"unknown setting {name!r}; known settings: {', '.join(SETTINGS)}", name=name
                )
            sql += " AND target = ?"
            params.append(name)
        sql += " ORDER BY id DESC"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise BearError(f"history: limit {limit!r} is not a whole number ≥ 0")
            sql += " LIMIT ?"
            params.append(limit)
        frame = self._db.cursor().execute(sql, params).df()
        if frame.empty:
            return pd.DataFrame(columns=["changed_at", "actor", "name", "old", "new"])
        for col in ("old", "new"):
            frame[col] = frame[col].map(lambda t: None if t is None else json.loads(t))
        return frame


def _actor(actor: object) -> str:
    """Who made a change, as recorded: a non-empty line of at most 200 characters."""
    text = actor.strip() if isinstance(actor, str) else ""
    if not text or len(text) > 200 or not text.isprintable():
        raise BearError(f"a change needs who made it (a name of 1–200 characters), not {actor!r}")
    return text


def _log_rows(before: Mapping[str, Any], changed: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The ``change_log`` rows of a change: (kind, target, old JSON, new JSON)."""
    rows = [("setting", k, json.dumps(before.get(k)), json.dumps(v)) for k, v in changed.items()]
    if "disabled_rules" in changed:
        was, now = set(before.get("disabled_rules") or ()), set(changed["disabled_rules"])
        rows += [
            (
                "rule",
                rule_id,
                json.dumps({"enabled": rule_id not in was}),
                json.dumps({"enabled": rule_id not in now}),
            )
            for rule_id in sorted(was ^ now)
        ]
    return rows
