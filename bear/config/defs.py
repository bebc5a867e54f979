"""What a setting is: its declaration (``SettingDef``: type, default, what it allows), how a
value is checked and coerced, and ``SETTINGS``, BEAR's own settings, each declared once.

Plugins declare theirs with ``bear.PluginSetting`` (``bear.config.plugin``); they become
``SettingDef`` s too, named ``<plugin>.<setting>``, checked by the same code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bear.errors import SettingError

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
    """One setting: its name, type (``kind``), default, help text and what it allows."""

    name: str
    kind: str  # one of KINDS
    default: Any
    help: str
    minimum: float | Decimal | None = None
    maximum: float | Decimal | None = None
    choices: tuple[str, ...] = ()
    # True when a change can change a rule's verdict: the rule registry is rebuilt (and
    # checked before the value is saved) and cached eligibility is dropped.
    affects_rules: bool = False
    # True for a setting that loads code or files of the server: it is set when BEAR starts
    # (``bear serve --plugins-dir``, or the CLI / Python API while nothing serves the book),
    # never by a person using a running server (``Settings.lock_startup``).
    startup: bool = False
    # The plugin that declared it (its name is then ``<plugin>.<setting>``); None for BEAR's.
    plugin: str | None = None

    def allowed(self) -> str:
        if self.kind in ("int", "float", "decimal"):
            lo = "" if self.minimum is None else f"≥ {_number(self.minimum)}"
            hi = "" if self.maximum is None else f"≤ {_number(self.maximum)}"
            word = {
                "int": "an integer",
                "float": "a number",
                "decimal": f"a decimal number (at most {DECIMAL_PLACES} decimals)",
            }[self.kind]
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
        if kind == "decimal":
            return self._decimal(value, bad)
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

    def _decimal(self, value: Any, bad: SettingError) -> Decimal:
        """An exact amount: an int, a ``Decimal`` or text such as "10000.50" (a float from JSON
        is read from its shortest text, never from its binary value)."""
        if isinstance(value, bool):
            raise bad
        if isinstance(value, float):
            value = repr(value)
        if isinstance(value, int):
            value = Decimal(value)
        if isinstance(value, str):
            try:
                value = Decimal(value.strip())
            except InvalidOperation:
                raise bad from None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise bad
        value = Decimal(format(value, "f"))  # 1E+4 -> 10000: it may go into SQL as written
        exponent = value.as_tuple().exponent
        if (isinstance(exponent, int) and exponent < -DECIMAL_PLACES) or abs(value) >= DECIMAL_MAX:
            raise bad
        if self.minimum is not None and value < Decimal(str(self.minimum)):
            raise bad
        if self.maximum is not None and value > Decimal(str(self.maximum)):
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
            "auto_post",
            "bool",
            False,
            "Post a run's documents (in progress → complete) as soon as its invoicing ends.",
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

# Every type a setting may have (a plugin's ``PluginSetting.kind`` too).
KINDS = (
    *("int", "float", "decimal", "bool", "str", "choice"),
    *("emails", "rule_ids", "url", "email", "path"),
)
DECIMAL_PLACES = 6
DECIMAL_MAX = Decimal(10) ** 18


def _number(x: Any) -> str:
    """A bound as the allowed-values text shows it."""
    return format(x, "f") if isinstance(x, Decimal) else f"{x:g}"


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not a setting value")


def dumps(value: Any) -> str:
    """A setting's value as stored (JSON); a decimal is stored as its exact text."""
    return json.dumps(value, default=_exact)


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate values of BEAR's own settings (an unknown name raises) and return them coerced."""
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
