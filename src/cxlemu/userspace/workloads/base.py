"""What every workload generator shares: typed parameters with parsing and
field-named errors, and the generator protocol the engine drives.

A generator is created from parameters (``Gups(rss="16G", hot="4G")``),
``setup(proc)`` maps its named VMAs through the process's system calls, and
``batch(n, rng)`` returns about ``n`` accesses as a :class:`Batch` of
virtual page numbers (``address >> 12``), write flags and optional
multiplicities (a sequential pass over a page is 64 cache-line accesses:
one entry with count 64).  ``tick(proc, now_ns)`` lets a workload change
phase or allocate and free over time; ``done`` ends a finite one.

Units: sizes are binary (``4K``, ``512M``, ``16G``), counts decimal
(``50M`` = 50 000 000), durations ``500ms``/``2s``/``1m``.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import numpy as np

from cxlemu.util.lazydc import dataclass

PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT
LINES_PER_PAGE = PAGE // 64


class WorkloadError(ValueError):
    """Bad workload parameters; ``field`` names the parameter."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$")
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)\s*$")
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)?\s*$")
_BIN = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DEC = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12}
_TIME = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
         "h": 3_600_000_000_000, None: 1_000_000_000}


def parse_size(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"not a size: {v!r}")
    if isinstance(v, (int, np.integer)):
        if v < 0:
            raise ValueError(f"a size cannot be negative: {v}")
        return int(v)
    m = _SIZE.match(str(v))
    if not m:
        raise ValueError(f"not a size: {v!r} (use bytes or a K/M/G/T suffix)")
    return int(float(m.group(1)) * _BIN[m.group(2).lower()])


def parse_count(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"not a count: {v!r}")
    if isinstance(v, (int, np.integer)):
        if v < 0:
            raise ValueError(f"a count cannot be negative: {v}")
        return int(v)
    if isinstance(v, float) and v.is_integer() and v >= 0:
        return int(v)
    m = _COUNT.match(str(v))
    if not m:
        raise ValueError(f"not a count: {v!r} (use a number with an optional K/M/G suffix)")
    return int(float(m.group(1)) * _DEC[m.group(2).lower()])


def parse_duration(v: Any) -> int:
    """Nanoseconds; a bare number is seconds."""
    if isinstance(v, bool):
        raise ValueError(f"not a duration: {v!r}")
    if isinstance(v, (int, float, np.integer)):
        if v < 0 or not math.isfinite(float(v)):
            raise ValueError(f"not a duration: {v!r}")
        return int(float(v) * 1e9)
    m = _DUR.match(str(v))
    if not m:
        raise ValueError(f"not a duration: {v!r} (use e.g. 500ms, 2s, 1m)")
    return int(float(m.group(1)) * _TIME[m.group(2)])


def parse_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {v!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"not a finite number: {v!r}")
    return x


def parse_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"not an integer: {v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v)
    s = str(v).strip()
    if not re.fullmatch(r"-?\d+", s):
        raise ValueError(f"not an integer: {v!r}")
    return int(s)


def parse_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on", "y"):
        return True
    if s in ("0", "false", "no", "off", "n"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


PARSERS = {"size": parse_size, "count": parse_count, "duration": parse_duration, "float": parse_float,
           "int": parse_int, "bool": parse_bool, "str": str}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None

    def parse(self, v: Any) -> Any:
        try:
            x = PARSERS[self.kind](v)
        except ValueError as e:
            raise WorkloadError(self.name, str(e)) from None
        if self.lo is not None and x < self.lo:
            raise WorkloadError(self.name, f"must be at least {self.lo}")
        if self.hi is not None and x > self.hi:
            raise WorkloadError(self.name, f"must be at most {self.hi}")
        return x


COMMON = (
    Param("threads", "int", 0, "threads (0: the machine's CPUs)", 0, 4096),
    Param("mlp", "float", 0.0, "misses each thread keeps in flight (0: the workload's default)", 0, 1024),
    Param("cpu_ns", "float", -1.0, "compute time per access in ns (-1: the workload's default)", -1, 1e9),
    Param("compress_ratio", "float", 3.0, "how well the data compresses (zswap)", 1.0, 1000.0),
)


@dataclass
class Batch:
    vpages: np.ndarray                 # int64 virtual page numbers (address >> 12)
    writes: np.ndarray | None = None   # bool, or None for all reads
    counts: np.ndarray | None = None   # accesses per entry (None: 1 each)
    mlp: float | None = None           # this batch's misses in flight (None: the workload's)
    cpu_ns: float | None = None        # this batch's compute per access (None: the workload's)

    def total(self) -> int:
        return int(self.vpages.size if self.counts is None else self.counts.sum())


class Workload:
    """Base class; subclasses declare ``name``, ``PARAMS``, defaults and ``batch``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    default_mlp: ClassVar[float] = 8.0
    default_cpu_ns: ClassVar[float] = 2.0

    def __init__(self, **params: Any):
        known = {p.name: p for p in self.PARAMS + COMMON}
        vals: dict[str, Any] = {}
        for k, v in params.items():
            key = k.replace("-", "_")
            if key not in known:
                raise WorkloadError(key, f"{self.name} has no parameter {key!r} "
                                         f"(parameters: {', '.join(sorted(known))})")
            vals[key] = known[key].parse(v)
        for p in self.PARAMS + COMMON:
            vals.setdefault(p.name, p.default if not isinstance(p.default, str) or p.kind == "str"
                            else p.parse(p.default))
        self.p = vals
        self.done = False
        self.validate()

    def validate(self) -> None:
        """Cross-parameter checks (raise WorkloadError)."""

    # engine-facing properties
    @property
    def threads(self) -> int:
        return int(self.p["threads"])

    @property
    def mlp(self) -> float:
        return float(self.p["mlp"] or self.default_mlp)

    @property
    def cpu_ns(self) -> float:
        c = float(self.p["cpu_ns"])
        return self.default_cpu_ns if c < 0 else c

    def describe(self) -> dict:
        return {"workload": self.name, **{k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                                         for k, v in self.p.items()}}

    def setup(self, proc) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch(self, n: int, rng: np.random.Generator) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def tick(self, proc, now_ns: int) -> None:
        """Called between epochs with the simulated time (phase changes, alloc/free)."""

    # helpers
    def map(self, proc, size: int, name: str, kind: str = "anon") -> int:
        """mmap a named VMA; returns its first virtual page number."""
        addr = proc.mmap(size, name, kind, compress_ratio=self.p["compress_ratio"])
        return addr >> PAGE_SHIFT


def pages_of(size: int) -> int:
    return max(1, -(-int(size) // PAGE))
