"""util/lazydc.py: a lazily built dataclass behaves exactly as the standard
one (issue 13: the methods are compiled on first use, not at import)."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import FrozenInstanceError, InitVar, field
from typing import ClassVar

import pytest
from hypothesis import given, settings, strategies as st

from cxlemu.util.lazydc import dataclass

VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.tuples(st.integers(0, 3)))


def _pair(frozen: bool, slots: bool, kw_only: bool, n: int, compare_mask: int):
    """The same class body decorated by the standard decorator and by ours."""
    def body():
        ns = {"__annotations__": {}}
        for i in range(n):
            ns["__annotations__"][f"f{i}"] = "object"
            if compare_mask >> i & 1:
                ns[f"f{i}"] = field(default=None, compare=False, repr=False)
            else:
                ns[f"f{i}"] = field(default=i)
        return ns
    opts = dict(frozen=frozen, slots=slots, kw_only=kw_only)
    std = dataclasses.dataclass(type("K", (), body()), **opts)
    ours = dataclass(type("K", (), body()), **opts)
    return std, ours


@settings(max_examples=150, deadline=None)
@given(frozen=st.booleans(), slots=st.booleans(), kw_only=st.booleans(), n=st.integers(0, 5),
       mask=st.integers(0, 31), a=st.lists(VALUES, min_size=5, max_size=5),
       b=st.lists(VALUES, min_size=5, max_size=5))
def test_same_behaviour_as_the_standard_decorator(frozen, slots, kw_only, n, mask, a, b):
    std, ours = _pair(frozen, slots, kw_only, n, mask)
    kwa = {f"f{i}": a[i] for i in range(n)}
    kwb = {f"f{i}": b[i] for i in range(n)}
    sa, sb, oa, ob = std(**kwa), std(**kwb), ours(**kwa), ours(**kwb)
    assert repr(oa) == repr(sa)
    assert (oa == ob) == (sa == sb)
    assert (oa == sa) is False                      # different classes never compare equal
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(std)]
    assert ours.__dataclass_params__.frozen == frozen
    assert hasattr(ours, "__slots__") == slots
    assert ours.__match_args__ == std.__match_args__
    if frozen:
        assert hash(oa) == hash(sa)
        if n:
            with pytest.raises(FrozenInstanceError):
                setattr(oa, "f0", 1)
    else:
        assert ours.__hash__ is None
        with pytest.raises(TypeError):
            hash(oa)
    assert dataclasses.replace(oa, **kwb) == ob
    assert dataclasses.asdict(oa) == dataclasses.asdict(sa)


def test_methods_are_compiled_on_first_use_only():
    @dataclass(frozen=True)
    class P:
        """A point."""
        x: int
        y: int = 0

    assert getattr(P.__dict__["__init__"], "_lazydc_stand_in", False)
    assert getattr(P.__dict__["__hash__"], "_lazydc_stand_in", False)
    assert P(1) == P(1, 0) and hash(P(1)) == hash(P(1, 0)) and repr(P(2, 3)) == "test_methods_are_compiled_on_first_use_only.<locals>.P(x=2, y=3)"
    for name in ("__init__", "__repr__", "__eq__", "__hash__"):
        assert not getattr(P.__dict__[name], "_lazydc_stand_in", False), name
    assert str(inspect.signature(P)) == "(x: 'int', y: 'int' = 0) -> None"


def _scenario(dc) -> list:
    """Explicit methods, __post_init__, default factories, a dataclass child
    and a plain child of a dataclass: what a program can observe."""
    calls: list = []

    @dc
    class Base:
        a: int
        items: list = field(default_factory=list)

        def __post_init__(self):
            calls.append(self.a)

        def __repr__(self):
            return "Base!"

    @dc(eq=False)
    class Child(Base):
        b: str = "x"

    class Plain(Base):
        def __init__(self):
            super().__init__(7)

    c = Child(1, b="y")
    out = [(c.a, c.items, c.b), list(calls), Child(2).items is not Child(3).items, repr(Base(1)),
           repr(c).rsplit(".", 1)[-1], Child(1) == Child(1), Child(1) == Base(1), Base(1) == Base(1),
           Base.__hash__ is None, Child.__hash__ is None]
    p = Plain()
    out += [(p.a, p.items), calls[-1], repr(p)]
    try:
        Base()
    except TypeError as e:
        out.append(str(e).rsplit(".", 1)[-1])
    return out


def test_explicit_methods_post_init_defaults_and_inheritance():
    ours = _scenario(dataclass)
    assert ours == _scenario(dataclasses.dataclass)
    assert ours[0] == (1, [], "y") and ours[3] == "Base!" and ours[-1].startswith("__init__() missing")


def test_order_and_unsafe_hash_go_to_the_standard_decorator():
    @dataclass(order=True)
    class O:
        x: int

    @dataclass(unsafe_hash=True)
    class H:
        x: int

    assert O(1) < O(2) and hash(H(1)) == hash(H(1))
    assert not getattr(O.__dict__["__init__"], "_lazydc_stand_in", False)


def _initvar_scenario(dc) -> tuple:
    @dc
    class A:
        x: int
        scale: InitVar[int] = 2
        k: ClassVar[int] = 5
        y: int = field(init=False, default=0)

        def __post_init__(self, scale):
            self.y = self.x * scale

    a = A(3, 4)
    return repr(a).rsplit(".", 1)[-1], a.y, A(3) == A(3), A.k, [f.name for f in dataclasses.fields(A)]


def test_initvar_classvar_and_init_false_fields():
    assert _initvar_scenario(dataclass) == _initvar_scenario(dataclasses.dataclass) == \
        ("A(x=3, y=12)", 12, True, 5, ["x", "y"])
