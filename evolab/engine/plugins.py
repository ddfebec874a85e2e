"""Plugins from outside the repository: operations, eliminator rules and scorers that register themselves.

A plugin is a module whose import registers its classes (`register_operation`, `register_rule`,
`register_scorer`). Two ways to name one, both read by `load_plugins()`:
- an installed package's entry point in the group `evolab.plugins` (`[project.entry-points."evolab.plugins"]
  words = "evolab_words"` in its pyproject.toml);
- `EVOLAB_PLUGINS=module[,module]`: modules importable from `PYTHONPATH`.

A plugin that fails to import or to register is rolled back (whatever it registered is removed again) and
reported by name; the built-ins and the other plugins go on working. A run records the plugins it uses,
with their versions, in its config, and a run resumed without one of them stops with an error naming it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from evolab.engine import eliminator, operations, scoring
from evolab.schema import RunConfig

ENTRY_POINT_GROUP = "evolab.plugins"
ENV_VAR = "EVOLAB_PLUGINS"


class PluginError(ValueError):
    """A run needs a plugin that is not loaded, or a plugin could not load; str() says which and what to do."""


@dataclass
class Plugin:
    """One plugin that was tried: where it came from, its version, and what it registered (or why it failed)."""

    name: str
    module: str
    source: str  # "entry point" | ENV_VAR
    version: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)  # {"operations": [...], "rules": [...], ...}
    error: str | None = None

    def record(self) -> dict[str, Any]:
        """What a run stores about the plugin (no paths, nothing secret)."""
        return {"name": self.name, "module": self.module, "source": self.source, "version": self.version,
                "provides": self.provides}


_PLUGINS: dict[str, Plugin] = {}  # by module name, once each per process


def _snapshot() -> dict[str, list]:
    return {"operations": list(operations.OPERATION_REGISTRY), "rules": list(eliminator.CASCADE),
            "scorers": list(scoring.SCORERS)}


def _restore(before: dict[str, list]) -> None:
    """Undo what a failing plugin registered."""
    for name in [n for n in operations.OPERATION_REGISTRY if n not in before["operations"]]:
        operations.unregister_operation(name)
    for rule in [r for r in eliminator.CASCADE if r not in before["rules"]]:
        eliminator.unregister_rule(rule)
    for name in [n for n in scoring.SCORERS if n not in before["scorers"]]:
        scoring.unregister_scorer(name)


def _provided(before: dict[str, list]) -> dict[str, list[str]]:
    after = _snapshot()
    out = {"operations": [n for n in after["operations"] if n not in before["operations"]],
           "rules": list(dict.fromkeys(r.id for r in after["rules"] if r not in before["rules"])),
           "scorers": [n for n in after["scorers"] if n not in before["scorers"]]}
    return {k: v for k, v in out.items() if v}


def _version(module_name: str, dist: str | None) -> str | None:
    if dist:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    module = sys.modules.get(module_name)
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


def _load(name: str, module_name: str, source: str, load: Any, dist: str | None = None) -> Plugin:
    plugin = Plugin(name=name, module=module_name, source=source)
    before = _snapshot()
    try:
        load()
    except BaseException as e:  # noqa: BLE001 - a plugin's failure, whatever it is, must not stop evolab
        if isinstance(e, KeyboardInterrupt):
            raise
        _restore(before)
        sys.modules.pop(module_name, None)  # a later load tries again instead of finding half a module
        where = "".join(traceback.format_exception_only(type(e), e)).strip()
        plugin.error = (f"evolab plugin {name!r} ({source} {module_name!r}) failed to load and was skipped: {where}")
        return plugin
    plugin.provides = _provided(before)
    plugin.version = _version(module_name, dist)
    return plugin


def load_plugins(env: str | None = None, *, entry_points: bool = True) -> list[Plugin]:
    """Load the plugins named by entry points and by EVOLAB_PLUGINS (or `env`), each module once per process.
    Returns every plugin tried so far, failures included (`Plugin.error` says what went wrong)."""
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            module_name = ep.value.split(":")[0].strip()
            if module_name not in _PLUGINS:
                dist = ep.dist.name if getattr(ep, "dist", None) is not None else None
                _PLUGINS[module_name] = _load(ep.name, module_name, "entry point", ep.load, dist)
    names = os.environ.get(ENV_VAR, "") if env is None else env
    for module_name in [m.strip() for m in names.split(",") if m.strip()]:
        if module_name not in _PLUGINS:
            _PLUGINS[module_name] = _load(module_name, module_name, ENV_VAR,
                                          lambda m=module_name: importlib.import_module(m))
    return list(_PLUGINS.values())


def loaded_plugins() -> list[Plugin]:
    return [p for p in _PLUGINS.values() if p.error is None]


def plugin_errors() -> list[str]:
    return [p.error for p in _PLUGINS.values() if p.error]


def used_by(config: RunConfig) -> list[dict[str, Any]]:
    """The loaded plugins whose operations, rules or scorers a run with this config uses."""
    weights = operations.weights_of(config.operation_weights)
    ops = {op for op, w in weights.items() if w > 0}
    scorers = set(config.scorers if config.scorers is not None else scoring.default_scorers())
    off = set(config.rules.off)
    used = []
    for p in loaded_plugins():
        provides = p.provides
        if (ops & set(provides.get("operations", [])) or scorers & set(provides.get("scorers", []))
                or set(provides.get("rules", [])) - off):
            used.append(p.record())
    return used


def check_registered(config: RunConfig) -> None:
    """Raise PluginError naming the plugin when a stored run uses an operation or scorer not registered now."""
    weights = operations.weights_of(config.operation_weights)
    missing_ops = [op for op, w in weights.items() if w > 0 and op not in operations.OPERATION_REGISTRY]
    missing_scorers = [s for s in (config.scorers or []) if s not in scoring.SCORERS]
    if not missing_ops and not missing_scorers:
        return
    what = ", ".join([f"operation {op!r}" for op in missing_ops] + [f"scorer {s!r}" for s in missing_scorers])
    names = [p["name"] for p in config.plugins
             if set(p.get("provides", {}).get("operations", [])) & set(missing_ops)
             or set(p.get("provides", {}).get("scorers", [])) & set(missing_scorers)]
    hint = (f"it came from the plugin {', '.join(map(repr, names))}: install it or name its module in {ENV_VAR}"
            if names else f"load the plugin that provides it (its package installed, or {ENV_VAR}=module)")
    raise PluginError(f"This run uses {what}, which is not registered; {hint}.")


def complete_config(config: RunConfig) -> RunConfig:
    """The config a new run stores: its operation weights and scorers written out, checked against the
    registries, and the plugins it uses recorded."""
    config.operation_weights = operations.weights_of(config.operation_weights)
    check_registered(config)
    config.scorers = [type(s).name for s in scoring.chosen_scorers(config)]
    config.plugins = used_by(config)
    return config
