"""Settings a plugin declares (hook ``bear_register_settings``): the public declaration
``PluginSetting``, and its check, which turns it into a ``SettingDef`` named
``<plugin>.<setting>`` — validated, stored, recorded and edited like BEAR's own settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from bear.config.defs import KINDS, SettingDef
from bear.errors import PluginError, SettingError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# A plugin's name becomes the first part of its settings' names: no spaces, no "=".
PLUGIN_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class PluginSetting:
    """A setting a plugin declares, returned from its ``bear_register_settings`` hook.

    It is stored as ``<plugin>.<name>`` (the plugin's name: its entry-point name), listed by
    ``bear settings list``, set with ``bear settings set``, the dashboard or
    ``ws.settings.update_by``, recorded in the history, and read by the plugin's rules as
    ``settings["<plugin>.<name>"]``.

    :param name: the setting's own name: lower-case letters, digits and underscores.
    :param kind: its type: ``int``, ``float``, ``decimal`` (an exact amount, a
        ``decimal.Decimal``), ``bool``, ``str``, ``choice``, ``emails``, ``rule_ids``,
        ``url``, ``email`` or ``path``.
    :param default: the value until someone sets one; it must be allowed.
    :param help: one sentence for the person who sets it.
    :param minimum: the smallest value allowed (``int``, ``float``, ``decimal``).
    :param maximum: the largest value allowed (numbers), or the longest text (``str``).
    :param choices: the values allowed (``choice``).
    :param affects_rules: a change rebuilds the rule registry (the plugin's
        ``bear_register_rules`` is called again with the new value, and must accept it before
        it is saved) and drops cached eligibility. True by default; set False for a setting
        no rule reads (a notifier's, say).
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: int | float | Decimal | None = None
    maximum: int | float | Decimal | None = None
    choices: tuple[str, ...] = ()
    affects_rules: bool = True


def declared(plugin: str, declarations: Iterable[Any] | None) -> list[SettingDef]:
    """The settings ``plugin`` declares, checked; raises ``PluginError`` naming the plugin and
    what is wrong (an unknown type, a default it does not allow, a name given twice…)."""
    if not PLUGIN_NAME_RE.fullmatch(plugin):
        raise PluginError(
            f"plugin {plugin!r} declares settings, but its name cannot begin a setting's name "
            "(letters, digits, '_', '-' and '.' only)"
        )
    if declarations is None:
        return []
    if isinstance(declarations, PluginSetting | str | bytes) or not isinstance(
        declarations, Iterable
    ):
        raise PluginError(
            f"plugin {plugin!r}: bear_register_settings must return a list of "
            f"bear.PluginSetting, not {type(declarations).__name__}"
        )
    out: dict[str, SettingDef] = {}
    for decl in declarations:
        d = _one(plugin, decl)
        if d.name in out:
            raise PluginError(f"plugin {plugin!r} declares the setting {d.name!r} twice")
        out[d.name] = d
    return list(out.values())


def _one(plugin: str, decl: Any) -> SettingDef:
    if not isinstance(decl, PluginSetting):
        raise PluginError(
            f"plugin {plugin!r}: bear_register_settings returned {decl!r}; "
            "expected bear.PluginSetting(name, kind, default, help, …)"
        )
    name = decl.name
    where = f"plugin {plugin!r}: setting {name!r}"
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise PluginError(
            f"plugin {plugin!r}: setting name {name!r} must be lower-case letters, digits and "
            "underscores, beginning with a letter (at most 64)"
        )
    if decl.kind not in KINDS:
        raise PluginError(f"{where} has type {decl.kind!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(decl.help, str) or not decl.help.strip():
        raise PluginError(f"{where} needs a help text (one sentence for the person who sets it)")
    for bound in ("minimum", "maximum"):
        value = getattr(decl, bound)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float | Decimal)
        ):
            raise PluginError(f"{where}: {bound} {value!r} is not a number")
    if decl.minimum is not None and decl.maximum is not None and decl.minimum > decl.maximum:
        raise PluginError(f"{where}: minimum {decl.minimum} is above maximum {decl.maximum}")
    choices = decl.choices
    if decl.kind == "choice" and (
        isinstance(choices, str)
        or not choices
        or not all(isinstance(c, str) and c.strip() == c and c for c in choices)
    ):
        raise PluginError(f"{where} is a choice: give its choices, a list of texts")
    d = SettingDef(
        f"{plugin}.{name}",
        decl.kind,
        None,
        decl.help.strip(),
        decl.minimum,
        decl.maximum,
        tuple(choices) if decl.kind == "choice" else (),
        affects_rules=bool(decl.affects_rules),
        plugin=plugin,
    )
    try:
        default = d.coerce(decl.default)
    except SettingError:
        raise PluginError(
            f"{where} has the default {decl.default!r}, which it does not allow "
            f"(expected {d.allowed()})"
        ) from None
    return replace(d, default=default)
