"""``PluginHost``, the one typed facade over the hooks, and the workspace's rule registry.

Built-in rule modules and notifiers are registered exactly like third-party plugins
(``bear.plugins.loading`` finds and loads them all). The host collects the plugins' settings
(``bear_register_settings``) and rules (``bear_register_rules``); an installed plugin that
fails is reported (``failures``, ``bear plugins``) and, while it may hold rules, every event is
held back by ``release.plugin_failed`` / ``invoice.plugin_failed`` — a broken plugin fails
closed, never open. Nothing else in BEAR touches ``pm.hook``.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import duckdb
import pandas as pd

from bear.config import Settings, SettingsSnapshot
from bear.config.defs import SettingDef
from bear.config.plugin import declared
from bear.db import Database
from bear.errors import BearError, PluginError
from bear.models import NotifierOptions, RunSummary
from bear.plugins.loading import (
    BUILTIN_NAMES,
    DEFAULT_PLUGINS,
    ENTRY_POINT,
    Failure,
    Loaded,
    autoload_disabled,
    env_list,
    make_plugin_manager,
    named,
    one_line,
)
from bear.rules import SqlRule
from bear.rules.engine import RegisteredRule, Registry
from bear.rules.model import sql_string

log = logging.getLogger(__name__)

__all__ = ["BUILTIN_NAMES", "DEFAULT_PLUGINS", "PluginHost", "make_plugin_manager"]
RESERVED_NAMESPACES = ("release", "invoice", "revert")
STARTUP = ("plugins_dir", "rules_file")
RULE_COLUMNS = [
    "id",
    "stage",
    "severity",
    "description",
    "plugin",
    "enabled",
    "kind",
    "last_seconds",
    "last_events",
    "last_violations",
    "last_error",
]


def changed_startup(changed: dict[str, Any]) -> dict[str, Any]:
    """The start-up settings among ``changed`` (applied even in safe mode)."""
    return {k: v for k, v in changed.items() if k in STARTUP}


class PluginHost:
    """The typed facade over the plugin manager, and the workspace's rule registry."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        extra: Iterable[object] | Mapping[str, object] = (),
        *,
        safe_mode: bool = False,
    ) -> None:
        self.db = db
        self.settings = settings
        self.extra = named(extra)
        self.safe_mode = safe_mode
        # safe mode: the stored start-up settings not applied (until they are set again)
        self.skipped = set(STARTUP) if safe_mode else set()
        # installed plugins that failed to register their rules (with the current settings)
        self.failed: dict[str, Failure] = {}
        self._prepared: dict[int, duckdb.DuckDBPyConnection] = {}
        self._lock = threading.Lock()
        self._adopt(
            make_plugin_manager(
                self.extra, "" if safe_mode else settings.plugins_dir, safe_mode=safe_mode
            )
        )
        self.registry = self._build(self._effective(settings.snapshot()))

    def _adopt(self, loaded: Loaded) -> None:
        """Take what was loaded: collect the plugins' settings (an installed plugin whose
        declaration is bad is left out, reported) and hand them to the settings."""
        defs = self._declared(loaded)
        for failure in loaded.failed.values():
            log.warning("%s", failure.message)
        self.pm, self.sources, self.dists = loaded.pm, loaded.sources, loaded.dists
        self.load_failed = loaded.failed
        self.settings.declare_plugins(defs, self.why_not_loaded)

    def _declared(self, loaded: Loaded) -> list[SettingDef]:
        """Every plugin's declared settings (``bear_register_settings``), checked. An installed
        plugin whose declaration is bad is unregistered and recorded as failed; any other
        plugin's raises ``PluginError``."""
        # Names are "<plugin>.<setting>" and a setting's own name has no dot, so two plugins
        # can never declare the same one; a plugin naming one twice is refused in ``declared``.
        defs: list[SettingDef] = []
        for impl in loaded.pm.hook.bear_register_settings.get_hookimpls():
            plugin = impl.plugin_name
            try:
                try:
                    mine = declared(plugin, impl.function())
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {plugin!r} failed to declare its settings: {one_line(exc)}"
                    ) from exc
            except PluginError as exc:
                if not loaded.sources.get(plugin, "").startswith(ENTRY_POINT):
                    exc.setting = exc.setting or self._source_setting(loaded.sources, plugin)
                    raise
                judges = bool(
                    [
                        i
                        for i in loaded.pm.hook.bear_register_rules.get_hookimpls()
                        if i.plugin_name == plugin
                    ]
                )
                error = _reason(plugin, exc)
                dist, version = loaded.dists.get(plugin, ("", ""))
                loaded.pm.unregister(name=plugin)
                loaded.sources.pop(plugin, None)
                failure = Failure(plugin, "bear_register_settings", error, dist, version, judges)
                loaded.failed[plugin] = failure
                continue
            defs += mine
        return defs

    def why_not_loaded(self, plugin: str) -> str | None:
        """Why plugin ``plugin`` is not loaded, in words (None: it is simply not installed)."""
        if plugin in self.load_failed:
            return self.load_failed[plugin].what
        if plugin in env_list("BEAR_DISABLE_PLUGINS"):
            return "it is disabled by BEAR_DISABLE_PLUGINS"
        if self.safe_mode:
            return "the book is open in safe mode, which loads no installed plugins"
        if autoload_disabled():
            return "BEAR_DISABLE_PLUGIN_AUTOLOAD is set, so no installed plugin is loaded"
        return None

    def failures(self) -> list[Failure]:
        """The installed plugins that failed, to load or to register their rules."""
        return [*self.load_failed.values(), *self.failed.values()]

    def _effective(self, settings: SettingsSnapshot) -> SettingsSnapshot:
        """The settings rules are registered with: in safe mode, without the stored plugins
        folder and rules file (the values stay stored, to be fixed)."""
        return replace(settings, **dict.fromkeys(self.skipped, "")) if self.skipped else settings

    @staticmethod
    def _source_setting(sources: Mapping[str, str], plugin: str) -> str | None:
        """The stored setting that brought ``plugin`` in, if one did."""
        if plugin == "rules_file":
            return "rules_file"
        if sources.get(plugin, "").startswith("plugins folder"):
            return "plugins_dir"
        return None

    def _setting_of(self, plugin: str) -> str | None:
        return self._source_setting(self.sources, plugin)

    # -- rules -----------------------------------------------------------------------------
    def build_registry(self, settings: SettingsSnapshot) -> Registry:
        """Collect every plugin's rules, as a check: any failure raises (``PluginError``)."""
        return self._build(settings, checking=True)

    def _build(
        self, settings: SettingsSnapshot, *, checking: bool = False, changed: Iterable[str] = ()
    ) -> Registry:
        """Collect every plugin's rules; bad definitions and duplicate ids fail here. Opening
        (``checking`` false), an installed plugin that fails is left out and reported; while a
        change is checked, only one that fails already and is not concerned by the change is."""
        rules: list[RegisteredRule] = []
        owner: dict[str, str] = {}
        failed: dict[str, Failure] = {}
        touched = {n.rpartition(".")[0] for n in changed if "." in n}
        cur = self._schema_cursor()
        try:
            for impl in self.pm.hook.bear_register_rules.get_hookimpls():
                plugin = impl.plugin_name
                try:
                    mine = self._rules_of(impl, plugin, settings, owner)
                    self._check_sql(cur, mine, settings)
                except PluginError as exc:
                    tolerated = self.sources.get(plugin, "").startswith(ENTRY_POINT) and (
                        not checking or (plugin in self.failed and plugin not in touched)
                    )
                    if not tolerated:
                        raise
                    dist, version = self.dists.get(plugin, ("", ""))
                    error = _reason(plugin, exc)
                    failed[plugin] = Failure(plugin, "bear_register_rules", error, dist, version)
                    continue
                owner.update({rr.id: plugin for rr in mine})
                rules += mine
        finally:
            cur.close()
        disabled = set(settings.disabled_rules)
        for rr in rules:
            rr.enabled = rr.id not in disabled
        rules += self._fail_closed([*self.load_failed.values(), *failed.values()])
        if not checking:
            for name in failed.keys() - self.failed.keys():
                log.warning("%s", failed[name].message)
            self.failed = failed
        return Registry(rules)

    def _rules_of(
        self, impl: Any, plugin: str, settings: SettingsSnapshot, owner: Mapping[str, str]
    ) -> list[RegisteredRule]:
        """One plugin's rules, checked (metadata, namespace, ids unique across plugins)."""
        try:
            got = impl.function(settings=settings)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin!r} failed to register its rules: {one_line(exc)}",
                setting=self._setting_of(plugin),
            ) from exc
        mine: list[RegisteredRule] = []
        for rule in list(got or []):
            rr = RegisteredRule.of(rule, plugin)
            rid = rr.id
            first = owner.get(rid) or next((r.plugin for r in mine if r.id == rid), None)
            if first is not None:
                raise PluginError(
                    f"rule id {rid!r} is registered twice: by plugin {first!r} and by plugin {plugin!r}",
                    setting=self._setting_of(plugin),
                )
            if rid.split(".")[0] in RESERVED_NAMESPACES and plugin not in BUILTIN_NAMES:
                raise PluginError(
                    f"plugin {plugin!r}: rule id {rid!r} uses the built-in namespace "
                    f"{rid.split('.')[0]!r}; choose a namespace of your own",
                    setting=self._setting_of(plugin),
                )
            mine.append(rr)
        return mine

    @staticmethod
    def _fail_closed(failures: list[Failure]) -> list[RegisteredRule]:
        """While an installed plugin that may hold rules is broken, every event is held back:
        one blocking rule per stage, always enabled, whose message names the plugin, its
        error and the way out. A broken plugin never lets through what it would have stopped."""
        judging = [f for f in failures if f.judges]
        if not judging:
            return []
        names = ", ".join(f.plugin for f in judging)
        message = sql_string("; ".join(f.violation for f in judging))
        out = []
        for stage in ("release", "invoice", "revert"):
            rule = SqlRule(
                id=f"{stage}.plugin_failed",
                stage=stage,
                fail_when="true",
                message_sql=message,
                description=f"Plugin {names} failed: every event is held back until it is "
                "fixed or disabled (BEAR_DISABLE_PLUGINS).",
            )
            rr = RegisteredRule.of(rule, names)
            out.append(rr)
        return out

    def _schema_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor with the (empty) batch view, to bind SQL rules against."""
        from bear.rules.batch import build_batch

        cur = self.db.con.cursor()
        try:
            self.prepare(cur, remember=False)
            cur.execute("CREATE OR REPLACE TEMP TABLE _schema_ids (billing_event_id BIGINT)")
            build_batch(cur, "_schema_ids")
        except BaseException:
            cur.close()
            raise
        return cur

    def _check_sql(
        self,
        cur: duckdb.DuckDBPyConnection,
        rules: list[RegisteredRule],
        settings: SettingsSnapshot,
    ) -> None:
        """Bind every SQL rule against the (empty) batch view, so a typo fails at start-up."""
        for rr in rules:
            if rr.kind != "sql":
                continue
            where = f" in rules file {settings.rules_file}" if rr.plugin == "rules_file" else ""
            try:
                kinds = cur.execute(
                    f"DESCRIBE SELECT ({rr.fail_sql}) AS f, ({rr.message_sql})::VARCHAR AS m, billing_event_id FROM _batch"
                ).fetchall()
            except duckdb.Error as exc:
                first = str(exc).splitlines()[0]
                raise PluginError(
                    f"rule {rr.id!r} of plugin {rr.plugin!r}{where} is invalid SQL: {first}",
                    setting=self._setting_of(rr.plugin),
                ) from None
            if kinds[0][1] not in ("BOOLEAN", '"NULL"', "NULL"):
                raise PluginError(
                    f"rule {rr.id!r} of plugin {rr.plugin!r}{where} is invalid SQL: its predicate is "
                    f"{kinds[0][1]}, not a true/false condition",
                    setting=self._setting_of(rr.plugin),
                )

    def rebuild(self) -> None:
        self.registry = self._build(self._effective(self.settings.snapshot()))

    def reload(self, changed: dict[str, Any]) -> None:
        """Apply changed settings: a new plugins folder reloads the plugins, anything else
        rebuilds the rule registry (keeping the last timings of rules that remain)."""
        timings, hung = self.registry.timings, self.registry.hung
        self.skipped -= set(changed)  # a start-up setting set on purpose applies
        if "plugins_dir" in changed:
            self._adopt(
                make_plugin_manager(self.extra, self.settings.plugins_dir, safe_mode=self.safe_mode)
            )
            self._prepared.clear()
        self.registry = self._build(self._effective(self.settings.snapshot()))
        self.registry.timings.update(
            {k: v for k, v in timings.items() if any(r.id == k for r in self.registry.rules)}
        )
        self.registry.hung.update(hung)  # a stray thread outlives a rebuilt registry

    def check_settings(self, proposed: SettingsSnapshot, changed: dict[str, Any]) -> None:
        """Validator run before settings are saved: a change must leave a working registry."""
        if not self.settings.affects_rules(changed):
            return
        if "plugins_dir" not in changed:
            self._build(
                replace(self._effective(proposed), **changed_startup(changed)),
                checking=True,
                changed=changed,
            )
            return
        # A new plugins folder: load it into a plugin manager of its own and register every
        # rule with it, so a folder whose plugins fail is refused before anything is stored.
        loaded = make_plugin_manager(self.extra, proposed.plugins_dir, safe_mode=self.safe_mode)
        probe = copy.copy(self)
        probe.pm, probe.sources, probe.dists = loaded.pm, loaded.sources, loaded.dists
        probe.load_failed = loaded.failed
        probe._prepared = {}
        defs = probe._declared(loaded)
        values = {k: v for k, v in proposed.as_dict().items() if "." not in k}
        values.update(self.settings.values_for(defs))
        with_plugins = SettingsSnapshot.of(values)
        probe._build(
            replace(self._effective(with_plugins), **changed_startup(changed)),
            checking=True,
            changed=changed,
        )

    def rules_frame(self) -> pd.DataFrame:
        rows = []
        for r in self.registry.rules:
            t = self.registry.timings.get(r.id)
            rows.append(
                {
                    "id": r.id,
                    "stage": r.stage,
                    "severity": r.severity,
                    "description": r.description,
                    "plugin": r.plugin,
                    "enabled": r.enabled,
                    # a rule of the TOML rules file is a SqlRule written without code
                    "kind": "declarative" if r.plugin == "rules_file" else r.kind,
                    "last_seconds": None if t is None else round(t.seconds, 4),
                    "last_events": None if t is None else t.events,
                    "last_violations": None if t is None else t.failed,
                    "last_error": None if t is None else t.error,
                }
            )
        return pd.DataFrame(rows, columns=RULE_COLUMNS)

    def plugins_frame(self) -> pd.DataFrame:
        """Every plugin with its version, source, hooks, ``status`` (``ok`` or ``failed``) and
        ``error`` (what went wrong and the way out, for a failed one)."""
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            failure = self.failed.get(name)
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            rows.append(
                {
                    "name": name,
                    "version": self.dists[name][1]
                    if name in self.dists
                    else getattr(plugin, "__version__", ""),
                    "source": self.sources.get(name, ""),
                    "hooks": ", ".join(hooks),
                    "status": "failed" if failure else "ok",
                    "error": failure.message if failure else None,
                }
            )
        for f in self.load_failed.values():
            rows.append(
                {
                    "name": f.plugin,
                    "version": f.version,
                    "source": f"{ENTRY_POINT} ({f.dist} {f.version})" if f.dist else ENTRY_POINT,
                    "hooks": "",
                    "status": "failed",
                    "error": f.message,
                }
            )
        return pd.DataFrame(rows, columns=["name", "version", "source", "hooks", "status", "error"])

    # -- connections -----------------------------------------------------------------------
    def prepare(self, con: duckdb.DuckDBPyConnection, *, remember: bool = True) -> None:
        """Call ``bear_prepare_connection`` on a cursor; long-lived cursors are remembered (by a
        reference, so a new cursor can never be mistaken for a closed one at the same address)."""
        key = id(con)
        if remember and self._prepared.get(key) is con:
            return
        for impl in self.pm.hook.bear_prepare_connection.get_hookimpls():
            try:
                impl.function(con=con)
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in bear_prepare_connection: {exc}"
                ) from exc
        if remember:
            with self._lock:
                self._prepared[key] = con

    # -- notifications ---------------------------------------------------------------------
    def notifier_names(self, kind: str) -> list[str]:
        """Plugins implementing the hook of notification ``kind``."""
        return [impl.plugin_name for impl in self._caller(kind).get_hookimpls()]

    def _caller(self, kind: str) -> Any:
        return {
            "release_finished": self.pm.hook.bear_release_finished,
            "invoicing_finished": self.pm.hook.bear_invoicing_finished,
            "run_failed": self.pm.hook.bear_run_failed,
        }[kind]

    def plugin(self, name: str) -> object | None:
        return self.pm.get_plugin(name)

    def notifier_options(self, plugin_name: str) -> NotifierOptions:
        """The plugin's ``bear_notifier_options`` (defaults when it has none or it fails: a
        failure here must not stop the work being recorded; it is logged)."""
        impls = self.pm.hook.bear_notifier_options.get_hookimpls()
        for impl in impls:
            if impl.plugin_name != plugin_name:
                continue
            try:
                got = impl.function()
            except Exception:
                log.exception("plugin %r failed in bear_notifier_options", plugin_name)
                return NotifierOptions()
            if isinstance(got, NotifierOptions):
                return got
            log.warning(
                "plugin %r: bear_notifier_options returned %r, not NotifierOptions",
                plugin_name,
                type(got).__name__,
            )
        return NotifierOptions()

    def test_channels(self) -> list[str]:
        """Plugins that can send a test message (``bear_send_test_notification``)."""
        return [i.plugin_name for i in self.pm.hook.bear_send_test_notification.get_hookimpls()]

    def send_test(
        self, channel: str, settings: SettingsSnapshot, recipient: str, timeout: float = 30.0
    ) -> str:
        """Call ONE plugin's ``bear_send_test_notification``, guarded and timed out; returns its
        line, or raises ``BearError`` saying why nothing was sent."""
        impls = [
            i
            for i in self.pm.hook.bear_send_test_notification.get_hookimpls()
            if i.plugin_name == channel
        ]
        if not impls:
            known = ", ".join(self.test_channels()) or "none"
            raise BearError(f"channel {channel!r} cannot send a test message (channels: {known})")
        ok, err, result = _guarded(
            f"test-{channel}",
            lambda: impls[0].function(settings=settings, recipient=recipient),
            timeout,
        )
        if not ok:
            raise BearError(err or "the test message could not be sent")
        return str(result or f"test message sent to {recipient}")

    def deliver(
        self,
        kind: str,
        plugin_name: str,
        summary: RunSummary,
        error: str = "",
        timeout: float = 30.0,
    ) -> tuple[bool, str | None, float]:
        """Call ONE plugin's notification hook, guarded and timed; returns (ok, error, seconds)."""
        impls = [i for i in self._caller(kind).get_hookimpls() if i.plugin_name == plugin_name]
        if not impls:
            return False, f"plugin {plugin_name!r} is not loaded", 0.0
        kwargs: dict[str, Any] = {"summary": summary}
        if kind == "run_failed":
            kwargs["error"] = error
        t0 = time.perf_counter()
        ok, err, _ = _guarded(f"notify-{plugin_name}", lambda: impls[0].function(**kwargs), timeout)
        return ok, err, time.perf_counter() - t0


def _reason(plugin: str, exc: BaseException) -> str:
    """A plugin's error as a ``Failure`` holds it: its first line, without the plugin's name
    and the step (the failure's message says those)."""
    text = (str(exc).splitlines() or [""])[0]
    for prefix in (
        f"plugin {plugin!r} failed to register its rules: ",
        f"plugin {plugin!r} failed to declare its settings: ",
        f"plugin {plugin!r}: ",
    ):
        text = text.removeprefix(prefix)
    return text


def _guarded(name: str, fn: Any, timeout: float) -> tuple[bool, str | None, Any]:
    """Call ``fn`` in a daemon thread, waiting at most ``timeout`` s: (ok, error, result). A
    plugin's exception is its error (recorded against it), never the caller's."""
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            result["value"] = fn()
        except BearError as exc:
            result["error"] = str(exc)
        except BaseException as exc:  # noqa: BLE001 — recorded against the plugin
            result["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=call, name=name, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return False, f"timed out after {timeout:g} s", None
    if "error" in result:
        return False, result["error"], None
    return True, None, result.get("value")
