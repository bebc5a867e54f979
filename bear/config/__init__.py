"""Settings: typed, validated, persisted in the ``settings`` table of the database.

Each of BEAR's settings is declared once in ``SETTINGS`` (``bear.config.defs``) with its type,
default and what it allows; a plugin declares its own with ``PluginSetting``
(``bear.config.plugin``), named ``<plugin>.<setting>``. The API (``ws.settings``), the CLI
(``bear settings``) and the dashboard all read that table, through ``Settings`` here; rules,
stages and notifiers get a ``SettingsSnapshot`` (``bear.config.snapshot``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bear.config.defs import (
    EMAIL_RE,
    KINDS,
    RULE_ID_RE,
    RULE_SETTINGS,
    SETTINGS,
    SMTP_SETTINGS,
    STARTUP_SETTINGS,
    URL_RE,
    SettingDef,
    dumps,
    is_email,
)
from bear.config.defs import validate as _validate_own
from bear.config.plugin import PluginSetting
from bear.config.snapshot import SettingsSnapshot, check_combination
from bear.errors import BearError, SettingError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Who a change is recorded as made by when the caller does not say (``Settings.update``).
LOCAL_ACTOR = "local"

__all__ = [
    "EMAIL_RE",
    "KINDS",
    "LOCAL_ACTOR",
    "RULE_ID_RE",
    "RULE_SETTINGS",
    "SETTINGS",
    "SMTP_SETTINGS",
    "STARTUP_SETTINGS",
    "URL_RE",
    "PluginSetting",
    "SettingDef",
    "Settings",
    "SettingsSnapshot",
    "check_combination",
    "is_email",
]


class Settings:
    """The settings of one database: ``settings.name`` (or ``settings["name"]``, which also
    reads a plugin's ``settings["<plugin>.<setting>"]``) reads, ``settings.update(...)`` and
    ``settings.update_by(actor, ...)`` write, ``settings.history()`` says who changed what."""

    def __init__(self, db: Any, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        object.__setattr__(self, "_db", db)
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_defs", dict(SETTINGS))  # BEAR's, then the plugins'
        object.__setattr__(self, "_explain", None)  # plugin name -> why it is not loaded
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_write_lock", threading.RLock())
        object.__setattr__(self, "_listeners", [on_change] if on_change else [])
        object.__setattr__(self, "_validators", [])
        object.__setattr__(self, "_snapshot", None)
        object.__setattr__(self, "_startup_locked", False)
        self.reload()

    def _stored(self) -> dict[str, Any]:
        rows = self._db.cursor().execute("SELECT key, value FROM settings").fetchall()
        return {k: json.loads(v) for k, v in rows}

    @staticmethod
    def _read(defs: Mapping[str, SettingDef], stored: Mapping[str, Any]) -> dict[str, Any]:
        values = {}
        for name, d in defs.items():
            try:
                values[name] = d.coerce(stored[name]) if name in stored else d.default
            except SettingError:
                # a value written by hand, or by an older version of the plugin, that no
                # longer validates: the default applies, and the stored value stays
                if d.plugin is not None:
                    log.warning(
                        "setting %r: the stored value %r is not allowed (%s); using the default %r",
                        name,
                        stored[name],
                        d.allowed(),
                        d.default,
                    )
                values[name] = d.default
        return values

    def reload(self) -> None:
        values = self._read(self._defs, self._stored())
        with self._lock:
            self._values.clear()
            self._values.update(values)
            object.__setattr__(self, "_snapshot", None)

    def declare_plugins(
        self, defs: Iterable[SettingDef], explain: Callable[[str], str | None] | None = None
    ) -> None:
        """Take the settings the loaded plugins declare (replacing those declared before) and
        read their stored values. ``explain(plugin)`` says why a plugin is not loaded, for the
        message given to whoever sets a setting of a plugin that is not."""
        mine = {d.name: d for d in defs}
        values = self._read(mine, self._stored())
        with self._lock:
            for name, d in self._defs.items():
                if d.plugin is not None:
                    self._values.pop(name, None)
            self._values.update(values)
            object.__setattr__(self, "_defs", {**SETTINGS, **dict(sorted(mine.items()))})
            object.__setattr__(self, "_explain", explain)
            object.__setattr__(self, "_snapshot", None)

    def values_for(self, defs: Iterable[SettingDef]) -> dict[str, Any]:
        """The stored values of settings ``defs`` (their defaults where none is stored or the
        stored one is not allowed), e.g. for plugins about to be loaded."""
        return self._read({d.name: d for d in defs}, self._stored())

    def definition(self, name: str) -> SettingDef:
        """The declaration of setting ``name`` (BEAR's or a loaded plugin's), or raise."""
        d = self._defs.get(name) if isinstance(name, str) else None
        if d is None:
            raise self.unknown(name)
        return d

    def affects_rules(self, names: Iterable[str]) -> bool:
        """True when a change of any of ``names`` can change a rule's verdict."""
        defs = self._defs
        return any(defs[n].affects_rules for n in names if n in defs)

    def unknown(self, name: Any, value: Any = None) -> SettingError:
        """The error for a setting that is not declared: for ``<plugin>.<setting>`` of a plugin
        that is not loaded, it says so (and that the stored value is kept)."""
        text = name if isinstance(name, str) else repr(name)
        plugin, dot, own = text.rpartition(".")
        loaded = {d.plugin for d in self._defs.values() if d.plugin is not None}
        if dot and plugin in loaded:
            mine = [n for n, d in self._defs.items() if d.plugin == plugin]
            message = f"plugin {plugin!r} has no setting {own!r}; its settings: {', '.join(mine)}"
        elif dot and plugin:
            why = (self._explain(plugin) if self._explain else None) or (
                "it is not installed, or not enabled"
            )
            try:
                stored = self._stored()
            except BearError:  # the book is closed: say what is known without it
                stored = {}
            kept = (
                f"; the stored value {json.dumps(stored[text])} is kept, and applies again "
                "once the plugin is loaded"
                if text in stored
                else ""
            )
            message = (
                f"setting {text!r} belongs to plugin {plugin!r}, which is not loaded: {why}{kept}"
            )
        else:
            message = f"unknown setting {text!r}; known settings: {', '.join(self._defs)}"
        return SettingError(message, name=text, value=value)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(str(self.unknown(name)))

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            if name in self._values:
                return self._values[name]
        raise self.unknown(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.update(**{name: value})

    def __dir__(self) -> list[str]:
        return [
            *SETTINGS,
            *("update", "update_by", "reset", "history", "as_dict", "snapshot", "reload"),
            *("validate", "check", "describe", "lock_startup", "unloaded", "definition"),
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
        """Every setting with its value, default, type, what it allows and its help text:
        BEAR's, then the loaded plugins' (``plugin`` names the plugin; None for BEAR's)."""
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
                "plugin": d.plugin,
                "affects_rules": d.affects_rules,
            }
            for d in self._defs.values()
        ]

    def unloaded(self) -> list[dict[str, Any]]:
        """Values stored for settings of plugins that are not loaded (disabled, failed or
        uninstalled): kept, not applied. Each: ``name``, ``value``, ``plugin``, ``note``."""
        out = []
        for name, value in sorted(self._stored().items()):
            if "." in name and name not in self._defs:
                plugin = name.rpartition(".")[0]
                why = (self._explain(plugin) if self._explain else None) or (
                    "it is not installed, or not enabled"
                )
                note = f"plugin {plugin!r} is not loaded: {why}"
                out.append({"name": name, "value": value, "plugin": plugin, "note": note})
        return out

    @staticmethod
    def validate(values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate values of BEAR's own settings (unknown names included) and return them
        coerced, or raise. ``check`` also knows the plugins' settings."""
        return _validate_own(values)

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate values of any declared setting, BEAR's or a loaded plugin's, and return them
        coerced, or raise ``SettingError`` naming the setting and what it allows."""
        defs = self._defs
        out = {}
        for name, value in values.items():
            if name not in defs:
                raise self.unknown(name, value)
            out[name] = defs[name].coerce(value)
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
        setting name can clash with it. A refused update writes and records nothing. A
        plugin's setting is named ``<plugin>.<setting>``: ``update_by(who, **{"example.x": 1})``.
        """
        actor = _actor(actor)
        clean = self.check(values)
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
            proposed = self.snapshot().updated(clean)
            check_combination(proposed, clean)
            for check in list(self._validators):
                check(proposed, clean)
            changed = {k: v for k, v in clean.items() if before.get(k) != v}
            log_rows = _log_rows(before, changed)
            with self._db.transaction() as cur:
                cur.execute(
                    "INSERT OR REPLACE INTO settings (key, value, updated_at) "
                    "SELECT k, v::JSON, current_timestamp FROM (SELECT unnest($keys) AS k, unnest($vals) AS v)",
                    {"keys": list(clean), "vals": [dumps(v) for v in clean.values()]},
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
        defaults = {n: self.definition(n).default for n in names}
        return self.update_by(actor, **defaults)

    def history(self, name: str | None = None, *, limit: int | None = None) -> pd.DataFrame:
        """Who changed the settings, newest first: ``changed_at``, ``actor``, ``name``, ``old``,
        ``new`` (the values as the setting holds them). ``name`` keeps one setting's changes
        (a plugin's too, loaded or not); ``limit`` keeps the newest ``limit`` rows."""
        import pandas as pd

        sql = (
            "SELECT changed_at, actor, target AS name, old_value::VARCHAR AS old, "
            "new_value::VARCHAR AS new FROM change_log WHERE kind = 'setting'"
        )
        params: list[Any] = []
        if name is not None:
            if name not in self._defs and not (isinstance(name, str) and "." in name):
                raise self.unknown(name)
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
    rows = [("setting", k, dumps(before.get(k)), dumps(v)) for k, v in changed.items()]
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
