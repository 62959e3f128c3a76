"""The registry: guarded entry-point loading and name -> component lookup, on pluggy.

The hooks themselves are specified in :mod:`ssl_kit.hooks`. ssl_kit's built-ins are the module
named by :data:`BUILTIN_PLUGINS`, imported by name and registered exactly as an installed plugin's
entry point is; then every entry point of the group ``ssl_kit`` is loaded.

Loading is guarded: a plugin that fails to import or whose hooks raise is recorded (entry point,
distribution, version, error), warned about once, and becomes a hard error only when a recipe asks
for a component it would have provided. ``SSL_KIT_DISABLE_PLUGINS=a,b`` blocks plugins by entry
point or distribution name.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.metadata
import os
import warnings
from typing import Any

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ssl_kit.errors import PluginError, did_you_mean
from ssl_kit.hooks import KINDS, PROJECT, SINGULAR, HookSpecs
from ssl_kit.version import __version__

#: ssl_kit's own components, loaded by module name like any plugin (pytest's default plugins).
BUILTIN_PLUGINS = ("ssl_kit.builtin",)


@dataclasses.dataclass
class PluginInfo:
    """One plugin as found: entry point, distribution, load status and what it provides."""

    name: str
    distribution: str
    version: str
    status: str = "ok"  # ok | failed | disabled
    error: str = ""
    provides: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    requires_core: str = ""  # the plugin's declared ssl-kit range, e.g. ">=0.1,<0.2"
    compatible: bool = True  # whether the installed ssl_kit satisfies requires_core

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Component:
    """A registered component: kind, name, factory, config dataclass, providing plugin."""

    kind: str
    name: str
    factory: Any
    config: type | None
    plugin: PluginInfo
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class Registry:
    """Every component of every loaded plugin, by kind and name."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(HookSpecs)
        self.plugins: list[PluginInfo] = []
        self._components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self._conflicts: dict[tuple[str, str], list[PluginInfo]] = {}

    # -- loading -------------------------------------------------------------------------------
    def add_plugin(
        self, plugin: Any, name: str, distribution: str = "", version: str = ""
    ) -> PluginInfo:
        """Register a plugin object (module or instance with @hookimpl functions) and collect
        its components. Failures are recorded on the returned PluginInfo, never raised."""
        info = PluginInfo(name=name, distribution=distribution or name, version=version)
        self.plugins.append(info)
        try:
            self.pm.register(plugin, name=name)
        except BaseException as err:  # a broken plugin (sys.exit, Ctrl-C in its import too) must not take the others down
            info.status, info.error = "failed", f"{type(err).__name__}: {err}"
            return info
        self._collect(plugin, info)
        return info

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and forget its components (used by ssl_kit.testing)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.plugins = [p for p in self.plugins if p.name != name]
        for kind in KINDS:
            for key, comp in list(self._components[kind].items()):
                if comp.plugin.name == name:
                    del self._components[kind][key]
        for key, owners in list(self._conflicts.items()):
            if any(p.name == name for p in owners):
                del self._conflicts[key]

    def _collect(self, plugin: Any, info: PluginInfo) -> None:
        pending: list[Component] = []
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"register_{kind}")
            impls = [i for i in hook.get_hookimpls() if i.plugin is plugin]

            def register(name: str, factory: Any, config: type | None = None, _kind=kind, **extra):
                if not isinstance(name, str) or not name:
                    raise TypeError(f"register(): component name must be a non-empty string, got {name!r}")
                if config is not None and not dataclasses.is_dataclass(config):
                    raise TypeError(f"register('{name}'): config must be a dataclass type")
                pending.append(Component(_kind, name, factory, config, info, extra))

            for impl in impls:
                try:
                    impl.function(**({"register": register} if "register" in impl.argnames else {}))
                except BaseException as err:  # SystemExit and KeyboardInterrupt too
                    info.status, info.error = "failed", f"{type(err).__name__} in register_{kind}: {err}"
                    self.pm.unregister(plugin)
                    return
        for comp in pending:
            existing = self._components[comp.kind].get(comp.name)
            if existing is not None and existing.plugin is not info:
                owners = self._conflicts.setdefault((comp.kind, comp.name), [existing.plugin])
                owners.append(info)
                warnings.warn(
                    f"ssl_kit: {SINGULAR[comp.kind]} '{comp.name}' is registered by both "
                    f"{existing.plugin.distribution} and {info.distribution}; using it is an error "
                    "until one of them is disabled (SSL_KIT_DISABLE_PLUGINS)",
                    PluginWarning,
                    stacklevel=2,
                )
                continue
            self._components[comp.kind][comp.name] = comp
            info.provides.setdefault(comp.kind, []).append(comp.name)

    def load_entry_points(self) -> None:
        disabled = {
            s.strip() for s in os.environ.get("SSL_KIT_DISABLE_PLUGINS", "").split(",") if s.strip()
        }
        seen: set[str] = set()
        for ep in sorted(importlib.metadata.entry_points(group=PROJECT), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.value.split(".")[0]
            version = dist.version if dist is not None else ""
            if ep.value in seen or ep.name in {p.name for p in self.plugins}:
                continue  # the same package found twice on sys.path
            seen.add(ep.value)
            requires_core, compatible = _core_requirement(dist)
            if ep.name in disabled or dist_name in disabled:
                self.plugins.append(PluginInfo(ep.name, dist_name, version, status="disabled"))
                continue
            try:
                plugin = ep.load()
            except BaseException as err:  # SystemExit / KeyboardInterrupt at import: that plugin's failure
                info = PluginInfo(ep.name, dist_name, version, "failed", f"{type(err).__name__}: {err}")
                self.plugins.append(info)
            else:
                info = self.add_plugin(plugin, ep.name, dist_name, version)
            info.requires_core, info.compatible = requires_core, compatible
            if not compatible:
                warnings.warn(
                    f"ssl_kit: plugin '{ep.name}' ({dist_name} {version}) requires ssl-kit{requires_core}, "
                    f"but ssl_kit {__version__} is installed; it may not work",
                    PluginWarning,
                    stacklevel=2,
                )
            if info.status == "failed":
                warnings.warn(
                    f"ssl_kit: plugin '{ep.name}' ({dist_name} {version}) failed to load: "
                    f"{info.error}. Its components are unavailable.",
                    PluginWarning,
                    stacklevel=2,
                )

    # -- lookup --------------------------------------------------------------------------------
    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Registered names of one kind, optionally filtered by a glob pattern."""
        return sorted(n for n in self._components[kind] if fnmatch.fnmatch(n, pattern))

    def get(self, kind: str, name: str, where: str = "") -> Component:
        """The component ``name`` of ``kind``; a clear UserError when it is not available."""
        prefix = f"{where} " if where else ""
        owners = self._conflicts.get((kind, name))
        if owners:
            dists = " and ".join(f"{p.distribution} ({p.name})" for p in owners)
            raise PluginError(
                f"{prefix}{SINGULAR[kind]} '{name}' is registered by both {dists}; uninstall one "
                "or disable it with SSL_KIT_DISABLE_PLUGINS=<entry point name>"
            )
        comp = self._components[kind].get(name)
        if comp is not None:
            return comp
        message = f"{prefix}unknown {SINGULAR[kind]} '{name}'.{did_you_mean(name, self._components[kind])}"
        message += f" Available: {', '.join(self.names(kind)) or '(none)'}."
        broken = [p for p in self.plugins if p.status != "ok"]
        if broken:
            # We cannot know what a plugin that failed to import would have provided; name the
            # likeliest one first (its entry point or distribution mentions the name).
            key = name.replace("-", "_").lower()
            broken.sort(key=lambda p: key not in (p.name + p.distribution).replace("-", "_").lower())
            p = broken[0]
            detail = f": {p.error}" if p.error else " (blocked by SSL_KIT_DISABLE_PLUGINS)"
            message += f" Plugin '{p.name}' from {p.distribution} {p.version} is {p.status}{detail}"
        raise PluginError(message)


def _core_requirement(dist: Any) -> tuple[str, bool]:
    """The ssl-kit version range a distribution declares, and whether this ssl_kit satisfies it."""
    if dist is None:
        return "", True
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "ssl-kit":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        return str(req.specifier), req.specifier.contains(__version__, prereleases=True)
    return "", True


class PluginWarning(UserWarning):
    """A plugin failed to load or conflicts with another one."""


_registry: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loading the built-ins and every entry point on first use."""
    global _registry
    if _registry is None or reload:
        registry = Registry()
        for module in BUILTIN_PLUGINS:
            registry.add_plugin(importlib.import_module(module), "ssl_kit", "ssl-kit", __version__)
        registry.load_entry_points()
        _registry = registry
    return _registry
