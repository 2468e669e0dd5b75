"""The workload file: several programs on one machine over time (TOML).

::

    [run]                         # optional defaults for `cxlemu run --workload FILE`
    duration = "10s"              # or: accesses = "100M"
    seed = 1
    policy = "tpp"

    [[process]]
    workload = "kv"               # a built-in generator (cxlemu workloads)
    name = "db"                   # the process name (default: the workload's)
    threads = 2
    start = "0s"                  # when it starts (simulated time from the run's start)
    stop = "8s"                   # when it is stopped (default: the end of the run)
    membind = "1"                 # a memory policy, numactl's way (one of membind, preferred,
                                  # preferred_many, interleave, weighted_interleave, localalloc)
    static_nodes = false          # MPOL_F_STATIC_NODES / relative_nodes: MPOL_F_RELATIVE_NODES
    cpunodebind = "0"             # run on the CPUs of these nodes
    cpuset_mems = "0-1"           # the process's cpuset mems
    [process.params]              # the generator's parameters
    keys = "10M"
    alpha = 0.99
    [[process.mbind]]             # mbind(2) on one of its VMAs after it is mapped
    vma = "kv-values"
    policy = "bind"               # bind, preferred, preferred_many, interleave, weighted_interleave, local
    nodes = "1"
    move = true                   # MPOL_MF_MOVE

Node lists are numactl's: ``0,2``, ``0-3``, ``all``.  Every error names the
field (``process[1].params.alpha: ...``) and nothing runs.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import field
from typing import Any

from cxlemu.kernel.mm import mempolicy as mp
from cxlemu.userspace.workloads.base import WorkloadError, parse_count, parse_duration, parse_int
from cxlemu.util.lazydc import dataclass

POLICY_KEYS = {"membind": mp.MPOL_BIND, "preferred": mp.MPOL_PREFERRED, "preferred_many": mp.MPOL_PREFERRED_MANY,
               "interleave": mp.MPOL_INTERLEAVE, "weighted_interleave": mp.MPOL_WEIGHTED_INTERLEAVE,
               "localalloc": mp.MPOL_LOCAL}
MODE_NAMES = {"bind": mp.MPOL_BIND, "preferred": mp.MPOL_PREFERRED, "preferred_many": mp.MPOL_PREFERRED_MANY,
              "interleave": mp.MPOL_INTERLEAVE, "weighted_interleave": mp.MPOL_WEIGHTED_INTERLEAVE,
              "local": mp.MPOL_LOCAL, "default": mp.MPOL_DEFAULT}
RUN_KEYS = ("duration", "accesses", "seed", "policy")
PROC_KEYS = ("workload", "name", "threads", "start", "stop", "static_nodes", "relative_nodes", "cpunodebind",
             "cpuset_mems", "params", "mbind", "smalloc") + tuple(POLICY_KEYS)
MBIND_KEYS = ("vma", "policy", "nodes", "move", "strict", "static_nodes", "relative_nodes")


class SpecError(ValueError):
    def __init__(self, field_: str, reason: str):
        super().__init__(f"{field_}: {reason}")
        self.field = field_
        self.reason = reason


@dataclass
class ProcSpec:
    """One process of a run: its program and how it is started."""
    workload: Any
    name: str = ""
    threads: int = 0
    start_ns: int = 0
    stop_ns: int | None = None
    policy: tuple[int, tuple[int, ...]] | None = None      # set_mempolicy(mode | flags, nodes)
    cpunodebind: tuple[int, ...] | None = None
    physcpubind: tuple[int, ...] | None = None
    cpuset_mems: tuple[int, ...] | None = None
    mbind: tuple = ()                                        # (vma name, mode, nodes, flags)
    process: Any = None                                      # run inside an existing process
    smalloc: dict | None = None                              # VMA name -> SMDK memory type (userspace/smdk/smalloc.py)


@dataclass
class RunDefaults:
    duration: int | None = None
    accesses: int | None = None
    seed: int | None = None
    policy: str | None = None


@dataclass
class Spec:
    run: RunDefaults
    processes: list = field(default_factory=list)       # sim.engine.ProcSpec


def parse_nodes(text: Any, possible: list[int] | None = None) -> tuple[int, ...]:
    """A numactl node list: ``0,2-3``, ``all``; sorted, unique."""
    if isinstance(text, bool):
        raise ValueError(f"not a node list: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"not a node: {text}")
        return (text,)
    s = str(text).strip()
    if s == "all":
        if possible is None:
            raise ValueError("'all' needs the machine's nodes")
        return tuple(possible)
    out: set[int] = set()
    if not s:
        raise ValueError("empty node list")
    for part in s.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"not a node list: {text!r}")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a or b - a > 4096:
            raise ValueError(f"bad node range {part.strip()!r}")
        out.update(range(a, b + 1))
    if possible is not None and possible:
        # libnuma's numa_parse_nodestring(): "node argument N is out of range"
        top = max(possible)
        for n in sorted(out):
            if n > top:
                raise ValueError(f"node argument {n} is out of range (possible nodes: {_ranges(possible)})")
    return tuple(sorted(out))


def _ranges(nodes) -> str:
    ns = sorted(set(nodes))
    parts, i = [], 0
    while i < len(ns):
        j = i
        while j + 1 < len(ns) and ns[j + 1] == ns[j] + 1:
            j += 1
        parts.append(str(ns[i]) if i == j else f"{ns[i]}-{ns[j]}")
        i = j + 1
    return ",".join(parts)


def _table(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise SpecError(where, "expected a table")
    return v


def _unknown(d: dict, known: tuple[str, ...], where: str) -> None:
    for k in d:
        if k not in known:
            raise SpecError(f"{where}.{k}" if where else k, f"unknown field (known: {', '.join(sorted(known))})")


def loads(text: str, possible_nodes: list[int] | None = None, policies: list[str] | None = None) -> Spec:
    """Parse a workload file; ``policies`` are the policy names ``run.policy``
    may take (the run loop's presets: sim/policy.py, passed in by the caller
    because userspace/ sits below sim/)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("<toml>", str(e)) from None
    return from_dict(doc, possible_nodes, policies)


def from_dict(doc: dict, possible_nodes: list[int] | None = None, policies: list[str] | None = None) -> Spec:
    from cxlemu.userspace import workloads
    _unknown(doc, ("run", "process"), "")
    run_t = _table(doc.get("run", {}), "run")
    _unknown(run_t, RUN_KEYS, "run")
    rd = RunDefaults()
    for key, parse in (("duration", parse_duration), ("accesses", parse_count), ("seed", parse_int)):
        if key in run_t:
            try:
                setattr(rd, key, parse(run_t[key]))
            except ValueError as e:
                raise SpecError(f"run.{key}", str(e)) from None
    if rd.duration is not None and rd.accesses is not None:
        raise SpecError("run", "give duration or accesses, not both")
    if "policy" in run_t:
        pol = run_t["policy"]
        if not isinstance(pol, str) or (policies is not None and pol not in policies):
            known = f" (known: {', '.join(policies)})" if policies is not None else ""
            raise SpecError("run.policy", f"unknown policy {pol!r}{known}")
        rd.policy = run_t["policy"]
    procs = doc.get("process", [])
    if not isinstance(procs, list) or not procs:
        raise SpecError("process", "expected at least one [[process]]")
    out = []
    for i, p in enumerate(procs):
        where = f"process[{i}]"
        p = _table(p, where)
        _unknown(p, PROC_KEYS, where)
        if "workload" not in p:
            raise SpecError(f"{where}.workload", "required field is missing")
        name = p["workload"]
        if not isinstance(name, str) or name not in workloads.names():
            raise SpecError(f"{where}.workload", f"unknown workload {name!r} (known: {', '.join(workloads.names())})")
        params = _table(p.get("params", {}), f"{where}.params")
        try:
            wl = workloads.make(name, **params)
        except WorkloadError as e:
            raise SpecError(f"{where}.params.{e.field}", e.reason) from None
        except (TypeError, ValueError) as e:
            raise SpecError(f"{where}.params", str(e)) from None
        ps = ProcSpec(wl)
        if "name" in p:
            if not isinstance(p["name"], str) or not p["name"] or len(p["name"]) > 64:
                raise SpecError(f"{where}.name", "expected a non-empty string (at most 64 characters)")
            ps.name = p["name"]
        try:
            if "threads" in p:
                v = parse_int(p["threads"])
                if not 1 <= v <= 4096:
                    raise ValueError("must be between 1 and 4096")
                ps.threads = v
        except ValueError as e:
            raise SpecError(f"{where}.threads", str(e)) from None
        for key in ("start", "stop"):
            if key in p:
                try:
                    v = parse_duration(p[key])
                except ValueError as e:
                    raise SpecError(f"{where}.{key}", str(e)) from None
                setattr(ps, "start_ns" if key == "start" else "stop_ns", v)
        if ps.stop_ns is not None and ps.stop_ns <= ps.start_ns:
            raise SpecError(f"{where}.stop", "must be after start")
        flags = 0
        for fk, fv in (("static_nodes", mp.MPOL_F_STATIC_NODES), ("relative_nodes", mp.MPOL_F_RELATIVE_NODES)):
            if fk in p:
                if not isinstance(p[fk], bool):
                    raise SpecError(f"{where}.{fk}", "expected true or false")
                if p[fk]:
                    flags |= fv
        pol_keys = [k for k in POLICY_KEYS if k in p]
        if len(pol_keys) > 1:
            raise SpecError(f"{where}.{pol_keys[1]}", f"only one memory policy (also {pol_keys[0]})")
        if pol_keys:
            k = pol_keys[0]
            if k == "localalloc":
                if p[k] is not True:
                    raise SpecError(f"{where}.localalloc", "expected true")
                ps.policy = (mp.MPOL_LOCAL, ())
            else:
                try:
                    nodes = parse_nodes(p[k], possible_nodes)
                except ValueError as e:
                    raise SpecError(f"{where}.{k}", str(e)) from None
                ps.policy = (POLICY_KEYS[k] | flags, nodes)
        for k in ("cpunodebind", "cpuset_mems"):
            if k in p:
                try:
                    setattr(ps, k, parse_nodes(p[k], possible_nodes))
                except ValueError as e:
                    raise SpecError(f"{where}.{k}", str(e)) from None
        mb = p.get("mbind", [])
        if not isinstance(mb, list):
            raise SpecError(f"{where}.mbind", "expected an array of tables ([[process.mbind]])")
        binds = []
        for j, m in enumerate(mb):
            mw = f"{where}.mbind[{j}]"
            m = _table(m, mw)
            _unknown(m, MBIND_KEYS, mw)
            if not isinstance(m.get("vma"), str):
                raise SpecError(f"{mw}.vma", "required: the name of one of the workload's VMAs")
            mode_name = m.get("policy", "bind")
            if mode_name not in MODE_NAMES:
                raise SpecError(f"{mw}.policy", f"unknown policy {mode_name!r} (known: {', '.join(MODE_NAMES)})")
            try:
                nodes = parse_nodes(m["nodes"], possible_nodes) if "nodes" in m else ()
            except ValueError as e:
                raise SpecError(f"{mw}.nodes", str(e)) from None
            mflags = 0
            for fk, fv in (("move", mp.MPOL_MF_MOVE), ("strict", mp.MPOL_MF_STRICT)):
                if fk in m:
                    if not isinstance(m[fk], bool):
                        raise SpecError(f"{mw}.{fk}", "expected true or false")
                    if m[fk]:
                        mflags |= fv
            mode = MODE_NAMES[mode_name]
            for fk, fv in (("static_nodes", mp.MPOL_F_STATIC_NODES), ("relative_nodes", mp.MPOL_F_RELATIVE_NODES)):
                if m.get(fk) is True:
                    mode |= fv
            binds.append((m["vma"], mode, nodes, mflags))
        ps.mbind = tuple(binds)
        if "smalloc" in p:
            ps.smalloc = parse_smalloc(p["smalloc"], f"{where}.smalloc", possible_nodes)
        out.append(ps)
    return Spec(rd, out)


def parse_smalloc(t: Any, where: str, possible: list[int] | None) -> dict:
    """``[process.smalloc]``: VMA name = "normal" | "exmem", or a table with
    ``type`` and optionally ``node`` (s_malloc_node) or ``interleave``
    (s_enable_node_interleave) -- SMDK's optimization path for the named VMAs."""
    t = _table(t, where)
    out: dict = {}
    for vma, v in t.items():
        w = f"{where}.{vma}"
        if isinstance(v, str):
            v = {"type": v}
        v = _table(v, w)
        _unknown(v, ("type", "node", "interleave"), w)
        ty = v.get("type")
        if ty not in ("normal", "exmem"):
            raise SpecError(f"{w}.type", "expected normal (SMDK_MEM_NORMAL) or exmem (SMDK_MEM_EXMEM)")
        ent: dict = {"type": ty}
        if "node" in v and "interleave" in v:
            raise SpecError(w, "give node or interleave, not both")
        if "node" in v:
            if isinstance(v["node"], bool) or not isinstance(v["node"], int) or v["node"] < 0:
                raise SpecError(f"{w}.node", "expected a node number")
            ent["node"] = v["node"]
        if "interleave" in v:
            try:
                ent["interleave"] = list(parse_nodes(v["interleave"], possible))
            except ValueError as e:
                raise SpecError(f"{w}.interleave", str(e)) from None
        out[vma] = ent
    return out

