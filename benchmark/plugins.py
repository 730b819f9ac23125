"""User plugins: modules imported before a config is validated, so they can register their own targets, defenses,
attacks and datasets with the public decorators (``plugins = ["mypkg.robust"]`` or ``--plugin``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from robustgrid.core import RobustgridError


def load_plugin(name: str, base: Path | None = None) -> ModuleType:
    """Import a module by dotted name, or a ``.py`` file (relative to ``base``, the config's folder).

    A file's folder goes onto ``sys.path`` and the file is imported by its stem, as Python runs a script, so a
    ``python:<stem>:<function>`` target can name it too; importing twice is a no-op.
    """
    if name.endswith(".py"):
        path = Path(name) if base is None or Path(name).is_absolute() else base / name
        path = path.resolve()
        if not path.is_file():
            raise RobustgridError(f"plugin file {path} does not exist")
        loaded = sys.modules.get(path.stem)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != path:
            raise RobustgridError(f"plugin file {path} is shadowed by the module {path.stem!r} from "
                                  f"{getattr(loaded, '__file__', '?')}; rename the file")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        name = path.stem
    try:
        return importlib.import_module(name)
    except RobustgridError:
        raise
    except Exception as exc:  # ImportError, or any error raised by the plugin's own top-level code
        raise RobustgridError(f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}") from None


def config_folder(source: str) -> Path | None:
    """The folder file plugins of a config are found in: the config file's own (None for a config given as a dict)."""
    return None if source == "<dict>" else Path(source).parent


def load_plugins(names: Iterable[object], base: Path | None = None) -> list[ModuleType]:
    """Import every plugin in order; a name that is not a string is a one-line error."""
    modules = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise RobustgridError(f"each plugin must be a module name or a .py path, got {name!r}")
        modules.append(load_plugin(name, base))
    return modules
