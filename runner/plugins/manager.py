"""Build a plugin manager for one pipeline: built-ins, entry points, and the pipeline's modules.

Only modules named in the pipeline's ``plugins:`` list, the built-ins and the
``runner`` entry-point group are ever imported.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pluggy

from runner.plugins import hookspecs
from runner.plugins.builtin import log_sink


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded; ``index`` is its position in ``plugins:``."""

    index: int | None
    name: str
    message: str


class HandlerConflict(Exception):
    pass


def _module_is_under(module: ModuleType, root: Path) -> bool:
    paths = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    return any(p and Path(p).resolve().is_relative_to(root) for p in paths)


def import_from_root(root: Path, name: str) -> ModuleType:
    """Import ``name`` with ``root`` first on sys.path.

    When an earlier pipeline of this process imported a same-named package from
    another project root, that package is dropped from the module cache first.
    """
    root = root.resolve()
    top = name.split(".")[0]
    cached = sys.modules.get(top)
    if cached is not None and not _module_is_under(cached, root):
        origin = getattr(cached, "__file__", None) or list(getattr(cached, "__path__", []) or [])
        if origin:  # a project package, not a builtin: drop it and its submodules
            for mod in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                del sys.modules[mod]
    root_str = str(root)
    if root_str in sys.path:
        sys.path.remove(root_str)
    sys.path.insert(0, root_str)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def create(
    root: Path, modules: Sequence[str], *, entry_points: bool = True
) -> tuple[pluggy.PluginManager, list[PluginProblem]]:
    """A fresh manager (no globals) and the problems met while loading plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(log_sink, name="runner.builtin.log_sink")
    problems: list[PluginProblem] = []
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken installed package must not crash `check`
            problems.append(PluginProblem(None, "entry points", f"{type(exc).__name__}: {exc}"))
    for index, name in enumerate(modules):
        try:
            module = import_from_root(root, name)
        except Exception as exc:
            last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
            problems.append(
                PluginProblem(
                    index,
                    name,
                    f"cannot import plugin {name!r}: {type(exc).__name__}: {exc}{where}",
                )
            )
            continue
        if pm.is_registered(module):
            continue
        try:
            pm.register(module, name=f"plugin:{name}")
        except Exception as exc:
            problems.append(PluginProblem(index, name, f"invalid plugin {name!r}: {exc}"))
    return pm, problems


def collect_handlers(
    pm: pluggy.PluginManager,
) -> tuple[dict[str, hookspecs.Handler], list[PluginProblem]]:
    """Merge every plugin's ``runner_handlers``; a name registered twice is a problem."""
    handlers: dict[str, hookspecs.Handler] = {}
    problems: list[PluginProblem] = []
    for impl in reversed(pm.hook.runner_handlers.get_hookimpls()):
        try:
            result = impl.function()
        except Exception as exc:
            problems.append(
                PluginProblem(
                    None,
                    impl.plugin_name,
                    f"runner_handlers of {impl.plugin_name} failed: {type(exc).__name__}: {exc}",
                )
            )
            continue
        if not isinstance(result, Mapping):
            problems.append(
                PluginProblem(
                    None,
                    impl.plugin_name,
                    f"runner_handlers of {impl.plugin_name} must return a dict",
                )
            )
            continue
        for name, fn in result.items():
            if not callable(fn):
                problems.append(
                    PluginProblem(None, impl.plugin_name, f"handler {name!r} is not callable")
                )
            elif name in handlers and handlers[name] is not fn:
                problems.append(
                    PluginProblem(
                        None, impl.plugin_name, f"handler {name!r} is registered by two plugins"
                    )
                )
            else:
                handlers[str(name)] = fn
    return handlers, problems
