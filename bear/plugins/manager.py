"""The plugin manager factory and ``PluginHost``, the one typed facade over the hooks.

Built-in rule modules and notifiers are registered exactly like third-party plugins. Sources,
in order: built-ins, entry points of group ``bear`` (unless ``BEAR_DISABLE_PLUGIN_AUTOLOAD``),
``.py`` files of the plugins folder (setting ``plugins_dir`` or ``$BEAR_PLUGINS_DIR``), and
plugin objects passed to ``bear.connect(plugins=[...])``. ``BEAR_DISABLE_PLUGINS=a,b`` blocks
plugins by name. Nothing else in BEAR touches ``pm.hook``.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pluggy

from bear.config import RULE_SETTINGS, Settings, SettingsSnapshot
from bear.db import Database
from bear.errors import BearError, PluginError
from bear.markers import PROJECT
from bear.models import NotifierOptions, RunSummary
from bear.plugins import hookspecs as notify_specs
from bear.rules import hookspecs as rule_specs
from bear.rules.engine import RegisteredRule, Registry

log = logging.getLogger(__name__)

# (module, plugin name): the core is built from these plugins, registered like any other.
DEFAULT_PLUGINS = (
    ("bear.rules.builtin_release", "builtin_release"),
    ("bear.rules.builtin_invoice", "builtin_invoice"),
    ("bear.rules.declarative", "rules_file"),
    ("bear.plugins.notify_inapp", "in_app"),
    ("bear.plugins.notify_email", "email"),
    ("bear.plugins.notify_log", "log"),
)
BUILTIN_NAMES = {name for _, name in DEFAULT_PLUGINS}
RESERVED_NAMESPACES = ("release", "invoice")


def _env_list(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


def make_plugin_manager(
    extra: Iterable[object] = (), plugins_dir: str = "", *, safe_mode: bool = False
) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """Build a plugin manager; returns it and {plugin name: source}. ``safe_mode`` loads no
    entry points and ignores ``$BEAR_PLUGINS_DIR``: only the built-ins, the plugins passed in
    and ``plugins_dir`` if one is given."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(rule_specs)
    pm.add_hookspecs(notify_specs)
    sources: dict[str, str] = {}
    for name in _env_list("BEAR_DISABLE_PLUGINS"):
        pm.set_blocked(name)
    for modname, short in DEFAULT_PLUGINS:
        if pm.is_blocked(short):
            continue
        pm.register(importlib.import_module(modname), name=short)
        sources[short] = "built-in"
    if safe_mode:
        log.warning("safe mode: entry-point plugins and the plugins folder are not loaded")
    elif os.environ.get("BEAR_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0", "false"):
        log.info("entry-point plugins not loaded: BEAR_DISABLE_PLUGIN_AUTOLOAD is set")
    else:
        before = set(n for n, _ in pm.list_name_plugin())
        try:
            pm.load_setuptools_entrypoints(PROJECT)
        except Exception as exc:  # an entry point that fails to import is a start-up error
            raise PluginError(
                f"a plugin installed under entry-point group 'bear' failed to load: {exc}"
            ) from exc
        dist = {id(p): d for p, d in pm.list_plugin_distinfo()}
        for name, plugin in pm.list_name_plugin():
            if name not in before and plugin is not None:
                d = dist.get(id(plugin))
                sources[name] = (
                    f"entry point ({d.project_name} {d.version})" if d else "entry point"
                )
    folder = plugins_dir or ("" if safe_mode else os.environ.get("BEAR_PLUGINS_DIR", ""))
    setting = "plugins_dir" if plugins_dir else None
    if folder:
        path = Path(folder)
        if not path.is_dir():
            raise PluginError(
                f"plugins folder {folder!r} does not exist or is not a folder", setting=setting
            )
        for file in sorted(path.glob("*.py")):
            name = file.stem
            if pm.is_blocked(name):
                continue
            modname = f"bear_plugin_{name}"
            spec = importlib.util.spec_from_file_location(modname, file)
            if spec is None or spec.loader is None:
                raise PluginError(f"plugin file {file} cannot be loaded", setting=setting)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise PluginError(
                    f"plugin file {file} failed to import: {type(exc).__name__}: {exc}",
                    setting=setting,
                ) from exc
            sys.modules[modname] = module
            _register(pm, module, name, setting)
            sources[name] = f"plugins folder ({file})"
    for obj in extra:
        name = getattr(obj, "__name__", None) or type(obj).__name__
        if isinstance(obj, type):
            raise PluginError(f"plugin {name!r} is a class; pass an instance or a module")
        if pm.is_blocked(name):
            continue
        base, n = name, 2
        while pm.get_plugin(name) is not None:
            name = f"{base}-{n}"
            n += 1
        _register(pm, obj, name)
        sources[name] = "passed to connect()"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
    return pm, sources


def _register(pm: pluggy.PluginManager, obj: object, name: str, setting: str | None = None) -> None:
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}", setting=setting) from None
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}", setting=setting) from None


def changed_startup(changed: dict[str, Any]) -> dict[str, Any]:
    """The start-up settings among ``changed`` (applied even in safe mode)."""
    return {k: v for k, v in changed.items() if k in ("plugins_dir", "rules_file")}


class PluginHost:
    """The typed facade over the plugin manager, and the workspace's rule registry."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        extra: Iterable[object] = (),
        *,
        safe_mode: bool = False,
    ) -> None:
        self.db = db
        self.settings = settings
        self.extra = list(extra)
        self.safe_mode = safe_mode
        # safe mode: the stored start-up settings not applied (until they are set again)
        self.skipped = {"plugins_dir", "rules_file"} if safe_mode else set()
        self.pm, self.sources = make_plugin_manager(
            self.extra, "" if safe_mode else settings.plugins_dir, safe_mode=safe_mode
        )
        self._prepared: dict[int, duckdb.DuckDBPyConnection] = {}
        self._lock = threading.Lock()
        self.registry = self.build_registry(self._effective(settings.snapshot()))

    def _effective(self, settings: SettingsSnapshot) -> SettingsSnapshot:
        """The settings rules are registered with: in safe mode, without the stored plugins
        folder and rules file (the values stay stored, to be fixed)."""
        return replace(settings, **dict.fromkeys(self.skipped, "")) if self.skipped else settings

    def _setting_of(self, plugin: str) -> str | None:
        """The stored setting that brought ``plugin`` in, if one did."""
        if plugin == "rules_file":
            return "rules_file"
        if self.sources.get(plugin, "").startswith("plugins folder"):
            return "plugins_dir"
        return None

    # -- rules -----------------------------------------------------------------------------
    def build_registry(self, settings: SettingsSnapshot) -> Registry:
        """Collect every plugin's rules; bad definitions and duplicate ids fail here."""
        rules: list[RegisteredRule] = []
        owner: dict[str, str] = {}
        disabled = set(settings.disabled_rules)
        for impl in self.pm.hook.bear_register_rules.get_hookimpls():
            plugin = impl.plugin_name
            try:
                got = impl.function(settings=settings)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {plugin!r} failed to register its rules: {type(exc).__name__}: {exc}",
                    setting=self._setting_of(plugin),
                ) from exc
            for rule in list(got or []):
                rr = RegisteredRule.of(rule, plugin)
                rid = rr.id
                if rid in owner:
                    raise PluginError(
                        f"rule id {rid!r} is registered twice: by plugin {owner[rid]!r} and by plugin {plugin!r}",
                        setting=self._setting_of(plugin),
                    )
                if rid.split(".")[0] in RESERVED_NAMESPACES and plugin not in BUILTIN_NAMES:
                    raise PluginError(
                        f"plugin {plugin!r}: rule id {rid!r} uses the built-in namespace "
                        f"{rid.split('.')[0]!r}; choose a namespace of your own",
                        setting=self._setting_of(plugin),
                    )
                owner[rid] = plugin
                rr.enabled = rid not in disabled
                rules.append(rr)
        registry = Registry(rules)
        self._check_sql(registry, settings)
        return registry

    def _check_sql(self, registry: Registry, settings: SettingsSnapshot) -> None:
        """Bind every SQL rule against the (empty) batch view, so a typo fails at start-up."""
        from bear.rules.batch import build_batch

        cur = self.db.con.cursor()
        try:
            self.prepare(cur, remember=False)
            cur.execute("CREATE OR REPLACE TEMP TABLE _schema_ids (billing_event_id BIGINT)")
            build_batch(cur, "_schema_ids")
            for rr in registry.rules:
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
        finally:
            cur.close()

    def rebuild(self) -> None:
        self.registry = self.build_registry(self._effective(self.settings.snapshot()))

    def reload(self, changed: dict[str, Any]) -> None:
        """Apply changed settings: a new plugins folder reloads the plugins, anything else
        rebuilds the rule registry (keeping the last timings of rules that remain)."""
        timings, hung = self.registry.timings, self.registry.hung
        self.skipped -= set(changed)  # a start-up setting set on purpose applies
        if "plugins_dir" in changed:
            self.pm, self.sources = make_plugin_manager(
                self.extra, self.settings.plugins_dir, safe_mode=self.safe_mode
            )
            self._prepared.clear()
        self.registry = self.build_registry(self._effective(self.settings.snapshot()))
        self.registry.timings.update(
            {k: v for k, v in timings.items() if any(r.id == k for r in self.registry.rules)}
        )
        self.registry.hung.update(hung)  # a stray thread outlives a rebuilt registry

    def check_settings(self, proposed: SettingsSnapshot, changed: dict[str, Any]) -> None:
        """Validator run before settings are saved: a change must leave a working registry."""
        if not RULE_SETTINGS & set(changed):
            return
        if "plugins_dir" not in changed:
            self.build_registry(replace(self._effective(proposed), **changed_startup(changed)))
            return
        # A new plugins folder: load it into a plugin manager of its own and register every
        # rule with it, so a folder whose plugins fail is refused before anything is stored.
        probe = copy.copy(self)
        probe.pm, probe.sources = make_plugin_manager(
            self.extra, proposed.plugins_dir, safe_mode=self.safe_mode
        )
        probe._prepared = {}
        probe.build_registry(replace(self._effective(proposed), **changed_startup(changed)))

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
                    "kind": r.kind,
                    "last_seconds": None if t is None else round(t.seconds, 4),
                    "last_events": None if t is None else t.events,
                    "last_violations": None if t is None else t.failed,
                    "last_error": None if t is None else t.error,
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
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
            ],
        )

    def plugins_frame(self) -> pd.DataFrame:
        rows = []
        dist = {id(p): d for p, d in self.pm.list_plugin_distinfo()}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            d = dist.get(id(plugin))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            rows.append(
                {
                    "name": name,
                    "version": d.version if d else getattr(plugin, "__version__", ""),
                    "source": self.sources.get(name, ""),
                    "hooks": ", ".join(hooks),
                }
            )
        return pd.DataFrame(rows, columns=["name", "version", "source", "hooks"])

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
