"""The Settings & Rules screen: every setting with its validation message (BEAR's, then each
plugin's own), the rules list with their plugins, rule toggles, the SMTP test e-mail, and the
history of who changed what.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from bear.auth import allowed, require

# The settings a rule may read (declared once, with ``affects_rules``, in bear.config):
# saving one rebuilds the workspace's rule registry, so the rules list is shown anew.
from bear.config import RULE_SETTINGS
from bear.errors import BearError
from bear.models import User
from bear.ui.state.common import TIME_FORMAT

if TYPE_CHECKING:
    from bear.workspace import Workspace

log = logging.getLogger(__name__)

HISTORY_ROWS = 50  # the newest setting changes the screen shows


# How a setting's name reads as a label: acronyms in capitals, a unit suffix in brackets.
_WORDS = {
    "smtp": "SMTP",
    "starttls": "STARTTLS",
    "url": "URL",
    "tls": "TLS",
    "id": "ID",
    "ids": "IDs",
    "api": "API",
    "csv": "CSV",
}
_UNITS = {"s": "seconds", "ms": "milliseconds", "mb": "MB", "pct": "%"}


class SettingsState(param.Parameterized):
    """Every setting with its validation message, the test e-mail, the rules list, and the
    newest setting changes. Changes are recorded as made by ``user`` (the dashboard's user)."""

    items = param.List(default=[], doc="ws.settings.describe()")
    messages = param.Dict(default={}, doc="setting name -> (ok, message)")
    rules = param.DataFrame(default=None, allow_None=True)
    plugins = param.DataFrame(default=None, allow_None=True)
    rules_message = param.String(default="")
    rules_ok = param.Boolean(default=True)
    test_message = param.String(default="")
    test_ok = param.Boolean(default=True)
    history = param.DataFrame(
        default=None, allow_None=True, doc="ws.settings.history(), the newest HISTORY_ROWS"
    )

    def __init__(
        self,
        ws: Workspace,
        env: Mapping[str, str] | None = None,
        user: str = "local",
        account: User | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.ws = ws
        self.user = user
        self._env = env
        self.account = account  # the signed-in person; None: the single-user owner
        self.refresh()

    @property
    def editable(self) -> bool:
        """Whether this person may change settings and rules (the admin role)."""
        return allowed(self.account, "settings")

    def refresh(self) -> None:
        self.items = self.ws.settings.describe()
        self.refresh_rules()
        self.refresh_history()

    def refresh_history(self) -> None:
        self.history = self.ws.settings.history(limit=HISTORY_ROWS)

    def history_frame(self) -> pd.DataFrame:
        """The history as the screen shows it: when, who, setting, and "old → new" as text."""
        frame = self.history
        if frame is None or frame.empty:
            return pd.DataFrame(columns=["when", "who", "setting", "change"])
        return pd.DataFrame(
            {
                "when": frame["changed_at"].dt.strftime(TIME_FORMAT),
                "who": frame["actor"],
                "setting": frame["name"],
                "change": [
                    f"{_shown(old)} → {_shown(new)}"
                    for old, new in zip(frame["old"], frame["new"], strict=True)
                ],
            }
        )

    def refresh_rules(self) -> None:
        self.rules = self.ws.rules()
        try:
            self.plugins = self.ws.plugin_list()
        except BearError as exc:  # listing plugins never blocks the settings page
            log.warning("plugin list failed: %s", exc)

    def affects_rules(self, name: str) -> bool:
        """Whether saving setting ``name`` rebuilds the rules (BEAR's rule settings, and a
        plugin's settings declared with ``affects_rules``)."""
        item = next((i for i in self.items if i["name"] == name), None)
        if item is None or "affects_rules" not in item:
            return name in RULE_SETTINGS
        return bool(item["affects_rules"])

    def groups(self) -> list[tuple[str | None, list[dict[str, Any]]]]:
        """The settings as the screen lays them out: BEAR's (plugin None) first, then each
        plugin's own, under its name."""
        out: dict[str | None, list[dict[str, Any]]] = {None: []}
        for item in self.items:
            out.setdefault(item.get("plugin"), []).append(item)
        return list(out.items())

    @staticmethod
    def label(item: Mapping[str, Any]) -> str:
        """A setting's label: its name without the plugin's, in words."""
        name = str(item["name"])
        if item.get("plugin"):
            name = name.removeprefix(f"{item['plugin']}.")
        words = [_WORDS.get(w, w) for w in name.split("_")]
        unit = ""
        if words and words[-1] in _UNITS:
            unit = f" ({_UNITS[words.pop()]})"
        text = " ".join(words)
        return text[:1].upper() + text[1:] + unit

    @staticmethod
    def css_name(name: str) -> str:
        """The CSS class of setting ``name``'s field (a plugin's dot becomes a dash)."""
        return "bear-setting-" + name.replace(".", "-")

    @property
    def password_set(self) -> bool:
        env = os.environ if self._env is None else self._env
        return bool(env.get("BEAR_SMTP_PASSWORD"))

    def value_text(self, name: str) -> Any:
        """The current value as a widget shows it (lists as comma-separated text, a decimal
        as its exact text)."""
        value = getattr(self.ws.settings, name)
        if isinstance(value, list):
            return ", ".join(value)
        if isinstance(value, Decimal):
            return format(value, "f")
        return value

    def save(self, name: str, value: Any) -> tuple[bool, str]:
        """Validate and store one setting; (ok, message) is shown next to the field."""
        if isinstance(value, str) and name in ("smtp_password", "password"):
            return False, "the SMTP password is never stored; set $BEAR_SMTP_PASSWORD"
        try:
            require(self.account, "settings")
            clean = self.ws.settings.update_by(self.user, **{name: value})
        except BearError as exc:  # SettingError, and RulesFileError / PluginError from the check
            result = (False, str(exc))
        else:
            shown = clean.get(name, value)
            if isinstance(shown, list):
                shown = ", ".join(shown) or "(none)"
            elif isinstance(shown, Decimal):
                shown = format(shown, "f")
            result = (True, f"saved: {shown}")
            self.items = self.ws.settings.describe()
            self.refresh_history()
            if self.affects_rules(name):
                # the workspace rebuilt its rule registry: show the new rules
                self.refresh_rules()
        self.messages = {**self.messages, name: result}
        if name in ("rules_file", "plugins_dir") and not result[0]:
            # a broken rules file or plugin folder is also shown above the rules list
            self.param.update(rules_ok=False, rules_message=result[1])
        elif name in ("rules_file", "plugins_dir"):
            self.param.update(rules_ok=True, rules_message=f"{name} {result[1]}")
        return result

    def set_rule_enabled(self, rule_id: str, enabled: bool) -> tuple[bool, str]:
        """Enable or disable a rule by editing ``disabled_rules``."""
        disabled = list(self.ws.settings.disabled_rules)
        if enabled:
            disabled = [r for r in disabled if r != rule_id]
        elif rule_id not in disabled:
            disabled.append(rule_id)
        ok, msg = self.save("disabled_rules", disabled)
        self.param.update(
            rules_ok=ok,
            rules_message=(f"{rule_id} {'enabled' if enabled else 'disabled'}" if ok else msg),
        )
        if not ok:
            self.refresh_rules()
        return ok, self.rules_message

    def send_test_email(self, recipient: str) -> tuple[bool, str]:
        """Send a test e-mail with the current SMTP settings, through the e-mail notifier's
        hook (``ws.send_test_notification``); (ok, message). A signed-in person's test e-mail
        goes to their own address only (the server is no relay for any address)."""
        try:
            if self.account is not None:
                require(self.account, "test_notification")
                if not self.account.email:
                    raise BearError(
                        f"{self.account.name} has no e-mail address; an admin sets it with "
                        f"`bear users set-email {self.account.name} ADDRESS`"
                    )
                recipient = self.account.email
            ok, msg = True, self.ws.send_test_notification(recipient, channel="email")
        except BearError as exc:
            ok, msg = False, str(exc)
        self.param.update(test_ok=ok, test_message=msg)
        return ok, msg


def _shown(value: Any) -> str:
    """A setting's value as one short line: lists comma-separated, empty ones as (none)."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if value == "":
        return "(empty)"
    return str(value)
