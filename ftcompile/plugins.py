"""User code named ``package.module:attr``: a drift model, a metric, a data factory, a model factory.

One loader for all of them, so that every plug-in is found the same way: the module is imported with the current
directory importable (as ``python -m`` would), and a failure is one line naming the plug-in, what kind it is and
the fix.
"""
from __future__ import annotations

import importlib
import os
import sys

from ftcompile.errors import ConfigError, FtcompileError, one_line


def load_object(spec: str, what: str, error: type[FtcompileError] = ConfigError):
    """The attribute ``attr`` of module ``package.module`` named by ``spec`` (``package.module:attr``).

    Args:
        what: what the plug-in is, for the message ("metric", "data factory", ...).
        error: the ``FtcompileError`` subclass to raise (its exit code is the CLI's).
    """
    module, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise error(f"cannot load {what} {spec} ({one_line(exc)}); check that {module} is importable from the current "
                    "directory or PYTHONPATH.") from None
