"""The Settings & Rules screen: every setting with its validation message, the SMTP test
e-mail, the history of setting changes, the rules with their plugins and toggles.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import panel as pn
from panel.viewable import Viewer

from bear.ui.components import (
    alert,
    esc,
    html_pane,
    set_frame,
    table,
)
from bear.ui.state import (
    Background,
    SettingsState,
)
from bear.ui.state.settings import HISTORY_ROWS
from bear.ui.views.common import button


class SettingsView(Viewer):
    """Every setting with validation next to the field, test e-mail, rules and plugins."""

    def __init__(
        self,
        state: SettingsState,
        background: Background | None = None,
        user: str = "",
        **params: Any,
    ):
        super().__init__(**params)
        self.state = state
        self._background = background
        self.fields: dict[str, pn.widgets.Widget] = {}
        self.notes: dict[str, pn.pane.HTML] = {}
        rows: list[Any] = []
        for plugin, items in state.groups():
            if plugin is not None and items:
                rows.append(
                    html_pane(
                        f"<h4 style='margin:14px 10px 0 10px'>Plugin {esc(plugin)}</h4>",
                        css_classes=[f"bear-plugin-settings-{plugin.replace('.', '-')}"],
                    )
                )
            rows += [self._field(item) for item in items]
        pw = "set" if state.password_set else "not set"
        self.password = html_pane(
            f"<div class='bear-line'>SMTP password: <b>{pw}</b> "
            "<span class='bear-muted'>(read from $BEAR_SMTP_PASSWORD in the server's environment; "
            "never shown or stored)</span></div>"
        )
        own = state.account.email if state.account is not None else None
        self.recipient = pn.widgets.TextInput(
            label="Send a test e-mail to",
            value=(own or "") if state.account is not None else (user if "@" in user else ""),
            width=260,
            # signed in, the test e-mail goes to the person's own address only
            disabled=state.account is not None,
        )
        self.send = button("Send test e-mail", "default", margin=(26, 5, 5, 5))
        self.send.on_click(self._send)
        self.test_message = html_pane()
        self.rules_message = html_pane()
        self.rules = table(
            height=420,
            sortable=True,
            titles={
                "id": "Rule",
                "stage": "Stage",
                "severity": "Severity",
                "kind": "Kind",
                "plugin": "Plugin",
                "enabled": "Enabled",
                "last_seconds": "Last time (s)",
                "last_violations": "Last violations",
                "last_error": "Last failure",
                "description": "Description",
            },
        )
        self.rules.on_click(self._rule_clicked)
        self.plugins = table(height=200, sortable=True)
        self.history = table(
            height=300,
            titles={"when": "When", "who": "Who", "setting": "Setting", "change": "Old → new"},
            css_classes=["bear-settings-history"],
        )
        state.param.watch(self._history, "history")
        state.param.watch(self._rules, "rules")
        state.param.watch(self._plugins, "plugins")
        state.param.watch(self._messages, "messages")
        state.param.watch(self._rules_message, ["rules_message", "rules_ok"])
        state.param.watch(self._test, ["test_message", "test_ok"])
        self.form = pn.Column(*rows, sizing_mode="stretch_width")
        self._rules()
        self._plugins()
        self._history()

    def _field(self, item: dict[str, Any]) -> pn.Row:
        """One setting's widget, with its help and what it allows (or why it is read-only)."""
        state = self.state
        name, kind = item["name"], item["kind"]
        value = state.value_text(name)
        label = state.label(item)
        if kind == "bool":
            w: pn.widgets.Widget = pn.widgets.Checkbox(
                label=label, value=bool(value), margin=(22, 10, 5, 10)
            )
        elif kind == "choice":
            choices = item["allowed"].removeprefix("one of ").replace("'", "").split(", ")
            w = pn.widgets.Select(label=label, options=choices, value=value, width=260)
        else:
            w = pn.widgets.TextInput(
                label=label, value="" if value is None else str(value), width=260
            )
        w.css_classes = [state.css_name(name)]
        if not state.editable:  # a viewer or analyst reads the settings
            w.disabled = True
            hint = "<i>Only an admin changes settings.</i>"
        elif item.get("editable", True):
            w.param.watch(partial(self._save, name), "value")
            hint = f"<i>Allowed: {esc(item['allowed'])}.</i>"
        else:  # loads code or files of the server: set when BEAR starts
            w.disabled = True
            flag = name.replace("_", "-")
            hint = (
                f"<i>Set when the server starts (<code>bear serve --{flag} …</code>), "
                "not from the dashboard.</i>"
            )
        note = html_pane(
            f"<div class='bear-muted'>{esc(item['help'])} {hint}</div>",
            margin=(20, 10, 0, 10),
        )
        self.fields[name] = w
        self.notes[name] = note
        return pn.Row(w, note, sizing_mode="stretch_width")

    def _save(self, name: str, event: Any) -> None:
        self.state.save(name, event.new)

    def _messages(self, event: Any) -> None:
        items = {i["name"]: i for i in self.state.items}
        for name, (ok, text) in event.new.items():
            note = self.notes.get(name)
            if note is None:
                continue
            item = items[name]
            hint = f"<div class='bear-muted'>{esc(item['help'])} <i>Allowed: {esc(item['allowed'])}.</i></div>"
            cls = "bear-ok" if ok else "bear-err"
            note.object = f"<div class='{cls}'>{'✓ ' if ok else '✗ '}{esc(text)}</div>{hint}"

    def _send(self, event: Any) -> None:
        self.test_message.object = "<div class='bear-muted'>Sending…</div>"
        recipient = self.recipient.value
        if self._background is None:
            self.state.send_test_email(recipient)
        else:
            self._background(lambda: self.state.send_test_email(recipient))

    def _test(self, *_: Any) -> None:
        s = self.state
        self.test_message.object = (
            alert(s.test_message, "ok" if s.test_ok else "err") if s.test_message else ""
        )

    def _rules(self, *_: Any) -> None:
        frame = self.state.rules
        if frame is None:
            return
        cols = [
            "id",
            "enabled",
            "stage",
            "severity",
            "kind",
            "plugin",
            "last_seconds",
            "last_violations",
            "last_error",
            "description",
        ]
        from bear.ui.state import display_frame

        shown = display_frame(frame[[c for c in cols if c in frame.columns]])
        set_frame(self.rules, shown)
        self.rules.formatters = {**self.rules.formatters, "enabled": {"type": "tickCross"}}

    def _plugins(self, *_: Any) -> None:
        from bear.ui.state import display_frame

        if self.state.plugins is not None:
            set_frame(self.plugins, display_frame(self.state.plugins))

    def _history(self, *_: Any) -> None:
        set_frame(self.history, self.state.history_frame())

    def _rule_clicked(self, event: Any) -> None:
        """One click on the Enabled tick turns the rule off or on."""
        frame = self.rules.value
        if event.column != "enabled" or not 0 <= event.row < len(frame):
            return
        row = frame.iloc[event.row]
        self.state.set_rule_enabled(str(row["id"]), not bool(row["enabled"]))

    def _rules_message(self, *_: Any) -> None:
        s = self.state
        self.rules_message.object = (
            alert(s.rules_message, "ok" if s.rules_ok else "err") if s.rules_message else ""
        )

    def __panel__(self) -> pn.viewable.Viewable:
        left = pn.Column(
            html_pane(
                "<h3 style='margin:4px 0'>Settings</h3><p class='bear-muted'>Changes are validated and saved when you leave a field or press Enter.</p>"
            ),
            self.form,
            self.password,
            pn.Row(self.recipient, self.send),
            self.test_message,
            html_pane(
                "<h3 style='margin:4px 0'>History</h3><p class='bear-muted'>The last "
                f"{HISTORY_ROWS} setting changes, newest first (a rule toggle is a change of "
                "disabled_rules).</p>"
            ),
            self.history,
            sizing_mode="stretch_width",
        )
        right = pn.Column(
            html_pane(
                "<h3 style='margin:4px 0'>Rules</h3><p class='bear-muted'>Click a rule's tick to disable it (it is added to disabled_rules) or enable it again.</p>"
            ),
            self.rules_message,
            self.rules,
            html_pane("<h3 style='margin:4px 0'>Plugins</h3>"),
            self.plugins,
            sizing_mode="stretch_width",
        )
        return pn.Row(left, right, sizing_mode="stretch_width")
