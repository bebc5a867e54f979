"""Loading plugins: the plugin manager factory, and what it found — plugins, their sources and
distributions, and the entry-point plugins that failed to load.

Sources, in order: built-ins, entry points of group ``bear`` (unless
``BEAR_DISABLE_PLUGIN_AUTOLOAD``), ``.py`` files of the plugins folder (setting ``plugins_dir``
or ``$BEAR_PLUGINS_DIR``), and plugin objects passed to ``bear.connect(plugins=...)``.
``BEAR_DISABLE_PLUGINS=a,b`` blocks plugins by name. An installed (entry-point) plugin that
fails — to import, or later in a registration hook — is recorded as a ``Failure`` and left
out, and BEAR still opens; a plugin of the folder or of ``connect()`` that fails stops the
book from opening, naming it (the folder is a stored setting, fixed in safe mode).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from bear.errors import PluginError
from bear.markers import PROJECT
from bear.plugins import hookspecs as plugin_specs
from bear.rules import hookspecs as rule_specs

log = logging.getLogger(__name__)

# (module, plugin name): the core is built from these plugins, registered like any other.
DEFAULT_PLUGINS = (
    ("bear.rules.builtin_release", "builtin_release"),
    ("bear.rules.builtin_invoice", "builtin_invoice"),
    ("bear.rules.builtin_revert", "builtin_revert"),
    ("bear.rules.declarative", "rules_file"),
    ("bear.plugins.notify_inapp", "in_app"),
    ("bear.plugins.notify_email", "email"),
    ("bear.plugins.notify_log", "log"),
)
BUILTIN_NAMES = {name for _, name in DEFAULT_PLUGINS}
ENTRY_POINT = "entry point"


def env_list(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


def autoload_disabled() -> bool:
    return os.environ.get("BEAR_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0", "false")


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class Failure:
    """An installed plugin that failed: where it comes from, at which step, and why.

    :ivar step: ``import``, or the hook that raised (``bear_register_settings``,
        ``bear_register_rules``), or ``register`` (pluggy refused it).
    :ivar judges: it has, or may have, rules: until it is fixed or disabled every event is
        held back by the rules ``release.plugin_failed`` and ``invoice.plugin_failed``.
    """

    plugin: str
    step: str
    error: str
    dist: str = ""
    version: str = ""
    judges: bool = True

    @property
    def origin(self) -> str:
        return f"entry point of {self.dist} {self.version}" if self.dist else ENTRY_POINT

    @property
    def what(self) -> str:
        """What went wrong, in one line: plugin, origin, step and error."""
        verb = "failed to load" if self.step in ("import", "register") else f"failed in {self.step}"
        return f"plugin {self.plugin!r} ({self.origin}) {verb}: {self.error}"

    @property
    def way_out(self) -> str:
        return (
            f"fix or update the plugin, or set BEAR_DISABLE_PLUGINS={self.plugin} to work "
            "without it (plugin names separated by commas)"
        )

    @property
    def message(self) -> str:
        """The whole story, for logs, ``bear plugins`` and the CLI's warning."""
        held = (
            " Until then every event is held back (its rules cannot judge them):"
            if self.judges
            else " To go on:"
        )
        return f"{self.what}.{held} {self.way_out}."

    @property
    def violation(self) -> str:
        """What an analyst reads against each event the plugin's rules could not judge."""
        return f"{self.what}, so its rules could not judge this event; {self.way_out}"


@dataclass
class Loaded:
    """What ``make_plugin_manager`` found: the manager, {plugin: source}, {plugin:
    (distribution, version)} of entry points, and the entry points that failed to load."""

    pm: pluggy.PluginManager
    sources: dict[str, str] = field(default_factory=dict)
    dists: dict[str, tuple[str, str]] = field(default_factory=dict)
    failed: dict[str, Failure] = field(default_factory=dict)


def named(plugins: Iterable[object] | Mapping[str, object]) -> list[tuple[str | None, object]]:
    """Plugins passed to ``connect()``: a list of objects (named after their ``__name__``), or
    a mapping {name: object} that names them (as their entry point would)."""
    if isinstance(plugins, Mapping):
        out = []
        for name, obj in plugins.items():
            if not isinstance(name, str) or not name.strip():
                raise PluginError(f"a plugin's name must be a non-empty text, not {name!r}")
            out.append((name.strip(), obj))
        return out
    return [(None, obj) for obj in plugins]


def make_plugin_manager(
    extra: Iterable[tuple[str | None, object]] = (),
    plugins_dir: str = "",
    *,
    safe_mode: bool = False,
) -> Loaded:
    """Build a plugin manager. ``safe_mode`` loads no entry points and ignores
    ``$BEAR_PLUGINS_DIR``: only the built-ins, the plugins passed in and ``plugins_dir`` if one
    is given."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(rule_specs)
    pm.add_hookspecs(plugin_specs)
    loaded = Loaded(pm)
    for name in env_list("BEAR_DISABLE_PLUGINS"):
        pm.set_blocked(name)
    for modname, short in DEFAULT_PLUGINS:
        if pm.is_blocked(short):
            continue
        pm.register(importlib.import_module(modname), name=short)
        loaded.sources[short] = "built-in"
    if safe_mode:
        log.warning("safe mode: entry-point plugins and the plugins folder are not loaded")
    elif autoload_disabled():
        log.info("entry-point plugins not loaded: BEAR_DISABLE_PLUGIN_AUTOLOAD is set")
    else:
        _load_entry_points(loaded)
    folder = plugins_dir or ("" if safe_mode else os.environ.get("BEAR_PLUGINS_DIR", ""))
    if folder:
        _load_folder(loaded, folder, "plugins_dir" if plugins_dir else None)
    for given, obj in extra:
        name = given or getattr(obj, "__name__", None) or type(obj).__name__
        if isinstance(obj, type):
            raise PluginError(f"plugin {name!r} is a class; pass an instance or a module")
        if pm.is_blocked(name):
            continue
        if given is not None and pm.get_plugin(name) is not None:
            raise PluginError(f"plugin name {name!r} is taken by another plugin")
        base, n = name, 2
        while pm.get_plugin(name) is not None:
            name = f"{base}-{n}"
            n += 1
        register(pm, obj, name)
        loaded.sources[name] = "passed to connect()"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
    return loaded


def _load_entry_points(loaded: Loaded) -> None:
    """Each entry point of group ``bear`` on its own, so one that fails is recorded against
    its name and distribution and the others still load."""
    pm = loaded.pm
    for dist in list(importlib.metadata.distributions()):
        for ep in dist.entry_points:
            if ep.group != PROJECT or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            if ep.name in loaded.failed:
                continue
            about = (str(dist.metadata["Name"] or "?"), str(dist.version or "?"))
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 — recorded against the plugin, BEAR opens
                fail(loaded, Failure(ep.name, "import", one_line(exc), *about))
                continue
            judges = callable(getattr(plugin, "bear_register_rules", None))
            try:
                pm.register(plugin, name=ep.name)
            except (ValueError, pluggy.PluginValidationError) as exc:
                fail(loaded, Failure(ep.name, "register", one_line(exc), *about, judges=judges))
                continue
            unknown = [
                h.name
                for h in pm.get_hookcallers(plugin) or []
                if not h.has_spec() and h.name.startswith("bear_")
            ]
            if unknown:
                pm.unregister(plugin)
                error = f"it implements the unknown hook {unknown[0]} (a misspelt name?)"
                fail(loaded, Failure(ep.name, "register", error, *about, judges=judges))
                continue
            loaded.dists[ep.name] = about
            loaded.sources[ep.name] = f"{ENTRY_POINT} ({about[0]} {about[1]})"


def fail(loaded: Loaded, failure: Failure) -> None:
    """Record ``failure`` (the plugin host logs it, once, when it adopts what was loaded)."""
    loaded.failed[failure.plugin] = failure


def _load_folder(loaded: Loaded, folder: str, setting: str | None) -> None:
    path = Path(folder)
    if not path.is_dir():
        raise PluginError(
            f"plugins folder {folder!r} does not exist or is not a folder", setting=setting
        )
    for file in sorted(path.glob("*.py")):
        name = file.stem
        if loaded.pm.is_blocked(name):
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
        register(loaded.pm, module, name, setting)
        loaded.sources[name] = f"plugins folder ({file})"


def register(pm: pluggy.PluginManager, obj: object, name: str, setting: str | None = None) -> None:
    try:
        pm.register(obj, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}", setting=setting) from None
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}", setting=setting) from None
