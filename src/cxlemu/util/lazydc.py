"""``dataclasses.dataclass`` whose generated methods are compiled on first use.

CPython 3.11 builds a dataclass's ``__init__``, ``__repr__``, ``__eq__`` and
(frozen) ``__hash__`` as source text and compiles each with ``exec`` when the
class is created: 0.2-1.6 ms per class.  A command imports the model's ~70
dataclasses and most of them are never instantiated through ``__init__``,
compared or printed in that process (a loaded machine's objects are rebuilt
by machine/stateio.py without calling ``__init__``): 20 of the ~75 ms that
``cxlemu exec b -- cxl list`` spends above ``python -c pass`` with the machine
stopped went to compiling methods nobody called (issue 13).

:func:`dataclass` takes the standard decorator's arguments and gives the
standard result: the same fields, ``__dataclass_fields__``,
``__dataclass_params__``, ``__match_args__``, slots and frozen
``__setattr__``/``__delattr__`` at once, and the very methods the standard
decorator generates, compiled by it the first time one of them is called.
Until then the class holds small stand-ins; the first call of one has the
standard decorator generate it (``__eq__`` and ``__hash__`` together) and
puts the real method in its place.  ``order=True`` and ``unsafe_hash=True``
are passed straight to the standard decorator.  A class without a docstring
gets ``Name(...)`` as its docstring (the standard one spells out
``__init__``'s signature, which does not exist yet), and
``inspect.signature`` of a class shows ``(*args, **kwargs)`` until its first
instance is made.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


def dataclass(cls: type | None = None, /, **kw: Any) -> Any:
    """``@dataclass`` or ``@dataclass(frozen=True, slots=True, ...)``."""
    if cls is None:
        return lambda c: _process(c, kw)
    return _process(cls, kw)


def _wanted(cls: type, kw: dict[str, Any]) -> tuple[list[str], bool]:
    """The methods the standard decorator would add to ``cls``, and whether
    it would make the class unhashable (its rules: an explicit definition in
    the class body wins; ``eq`` without ``frozen`` sets ``__hash__`` to None,
    ``eq`` with ``frozen`` hashes the fields)."""
    own = cls.__dict__
    want = []
    unhashable = False
    if kw.get("init", True) and "__init__" not in own:
        want.append("__init__")
    if kw.get("repr", True) and "__repr__" not in own:
        want.append("__repr__")
    if kw.get("eq", True):
        if "__eq__" not in own:
            want.append("__eq__")
        class_hash = own.get("__hash__", dataclasses.MISSING)
        explicit_hash = not (class_hash is dataclasses.MISSING or (class_hash is None and "__eq__" in own))
        if not explicit_hash:
            if kw.get("frozen", False):
                want.append("__hash__")
            else:
                unhashable = True
    return want, unhashable


def _process(cls: type, kw: dict[str, Any]) -> type:
    if kw.get("order") or kw.get("unsafe_hash"):
        return dataclasses.dataclass(cls, **kw)
    want, unhashable = _wanted(cls, kw)
    if not cls.__dict__.get("__doc__"):
        cls.__doc__ = f"{cls.__name__}(...)"
    out = dataclasses.dataclass(cls, **dict(kw, init=False, repr=False, eq=False))
    if unhashable:
        out.__hash__ = None       # type: ignore[assignment]
    frozen = bool(kw.get("frozen", False))
    for group, flags in _GROUPS:
        names = tuple(n for n in group if n in want)
        if names:
            build = _builder(out, names, frozen, flags)
            for name in names:
                setattr(out, name, _stand_in(out, name, build))
    return out


#: methods built together, and the standard decorator's flags that build them
_GROUPS = ((("__init__",), dict(init=True, repr=False, eq=False)),
           (("__repr__",), dict(init=False, repr=True, eq=False)),
           (("__eq__", "__hash__"), dict(init=False, repr=False, eq=True)))


def _builder(cls: type, names: tuple[str, ...], frozen: bool, flags: dict[str, bool]) -> Callable[[], None]:
    def build() -> None:
        """Have the standard decorator generate the methods for a throwaway
        subclass (the same fields, the same ``__post_init__``) and move them
        onto ``cls``: the generated code refers only to ``self``, ``other``
        and the fields' defaults."""
        if not getattr(cls.__dict__.get(names[0]), "_lazydc_stand_in", False):
            return                   # built meanwhile (another thread)
        ns = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
        sub = dataclasses.dataclass(type(cls.__name__, (cls,), ns), frozen=frozen, **flags)
        for name in names:
            setattr(cls, name, sub.__dict__[name])
    return build


def _stand_in(cls: type, name: str, build: Callable[[], None]) -> Callable[..., Any]:
    """``cls.<name>`` until the first call, which builds the real method
    (with its group) and forwards to ``cls``'s own: a subclass's override
    may be what called it, through ``super()``."""
    if name == "__init__":
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            build()
            cls.__dict__["__init__"](self, *args, **kwargs)
        fn: Callable[..., Any] = __init__
    elif name == "__repr__":
        def __repr__(self) -> str:
            build()
            return cls.__dict__["__repr__"](self)
        fn = __repr__
    elif name == "__eq__":
        def __eq__(self, other: Any) -> Any:
            build()
            return cls.__dict__["__eq__"](self, other)
        fn = __eq__
    else:
        def __hash__(self) -> int:
            build()
            return cls.__dict__["__hash__"](self)
        fn = __hash__
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    fn._lazydc_stand_in = True       # type: ignore[attr-defined]
    return fn
