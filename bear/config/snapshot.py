"""``SettingsSnapshot``: every setting's value at one moment, typed and immutable — what rules,
stages and notifiers receive — and the rules that span several settings."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from bear.config.defs import SETTINGS, dumps, validate
from bear.errors import SettingError


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


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class SettingsSnapshot:
    """Every setting's value at one moment, typed: what rules, stages and notifiers receive.

    ``Settings.snapshot()`` makes one; a run stores its snapshot as JSON when it is queued and
    reloads it (``from_json``) when it executes or resumes, so a run keeps the settings it was
    started with. Fields are the names of ``SETTINGS`` (a test keeps the two in step), plus
    ``plugin_values``: the settings plugins declared, as ``(name, value)`` pairs. Any setting
    reads as ``snapshot["name"]`` — a plugin's as ``snapshot["<plugin>.<setting>"]``.
    """

    release_batch_size: int = 200
    validation_limit: int = 1_000_000
    release_failure_mode: str = "batch"
    additional_notification_recipients: tuple[str, ...] = ()
    max_lines_per_document: int = 500
    require_approval: bool = True
    auto_post: bool = False
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
    plugin_values: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> SettingsSnapshot:
        """A snapshot of already validated values (lists become tuples); a name with a dot is a
        plugin's setting; other unknown names are ignored."""
        known = {f.name for f in fields(cls)} - {"plugin_values"}
        own = {k: _frozen(v) for k, v in values.items() if k in known}
        extra = tuple(sorted((k, _frozen(v)) for k, v in values.items() if "." in k))
        return cls(**own, plugin_values=extra)

    def __getitem__(self, name: str) -> Any:
        """The value of setting ``name``: ``snapshot["example.min_hours"]`` (a plugin's),
        ``snapshot["release_batch_size"]`` (BEAR's, also ``snapshot.release_batch_size``)."""
        if isinstance(name, str) and name in SETTINGS:
            return getattr(self, name)
        for key, value in self.plugin_values:
            if key == name:
                return value
        known = [k for k, _ in self.plugin_values] or ["none"]
        raise SettingError(
            f"unknown setting {name!r}; plugins' settings here: {', '.join(known)} (a plugin "
            "reads its own as settings['<plugin name>.<setting>'], once it declares it in "
            "bear_register_settings)",
            name=str(name),
        )

    def get(self, name: str, default: Any = None) -> Any:
        """``snapshot[name]``, or ``default`` for a setting it does not hold."""
        try:
            return self[name]
        except SettingError:
            return default

    def with_values(self, **values: Any) -> SettingsSnapshot:
        """This snapshot with ``values`` of BEAR's settings validated and applied (raises
        ``SettingError``)."""
        return replace(self, **{k: _frozen(v) for k, v in validate(values).items()})

    def updated(self, clean: Mapping[str, Any]) -> SettingsSnapshot:
        """This snapshot with already validated ``clean`` values (BEAR's and plugins') applied."""
        own = {k: _frozen(v) for k, v in clean.items() if k in SETTINGS}
        extra = dict(self.plugin_values)
        extra.update({k: _frozen(v) for k, v in clean.items() if k not in SETTINGS})
        return replace(self, **own, plugin_values=tuple(sorted(extra.items())))

    def as_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), as stored in the database and shown to users; a
        plugin's settings under their full names."""
        out = {
            f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "plugin_values"
        }
        out.update({k: _plain(v) for k, v in self.plugin_values})
        return out

    def to_json(self) -> str:
        return dumps(self.as_dict())

    @classmethod
    def from_json(cls, raw: str | None, fallback: SettingsSnapshot) -> SettingsSnapshot:
        """The snapshot stored as ``raw``; a setting it lacks (added since) or that no longer
        validates takes its value from ``fallback``. Plugins' settings come from ``fallback``:
        rules are registered with the book's current values, whatever a run stored."""
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
