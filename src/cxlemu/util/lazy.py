"""Modules imported on first use.

``np = lazy_module("numpy")`` at the top of a module keeps ``np.frombuffer``
working everywhere in it while ``import`` of the module itself stays cheap:
numpy is imported the first time an attribute of ``np`` is read, that is on
the data path only.  Commands that never touch array data (``cxl list``,
``cxlemu ls`` ...) then start without paying for numpy.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """A stand-in for a module, imported when an attribute is first read."""

    __slots__ = ("_name", "_mod")

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_mod", None)

    def _load(self) -> ModuleType:
        mod = self._mod
        if mod is None:
            mod = importlib.import_module(self._name)
            object.__setattr__(self, "_mod", mod)
        return mod

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self._mod is not None else "not loaded"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_module(name: str) -> Any:
    """A module object that imports ``name`` on first attribute access."""
    return LazyModule(name)
