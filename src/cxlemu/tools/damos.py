"""DAMON setups for ``cxlemu run --damos``: built-in recipes and damo's JSON,
written to /sys/kernel/mm/damon/admin through a sysfs backend, the way damo
stages kdamonds (``damo start``): ``nr_kdamonds``, then each kdamond's
context, targets, intervals and schemes file by file, then ``on``.

Recipes:

* ``hot_cold`` — the kernel's migrate_hot/migrate_cold example (commits
  "mm/damon/paddr: introduce DAMOS_MIGRATE_COLD/HOT", Linux 6.11): one
  physical-address kdamond per memory node; on the DRAM node, regions with a
  0 % access rate go to the CXL node (``migrate_cold``); on the CXL node,
  regions accessed at 5 % or more go to the DRAM node (``migrate_hot``);
  applied every second, no quota and no goals.
* ``mem_tier`` — damo's ``scripts/mem_tier.sh`` (Linux 6.16+): the same two
  kdamonds with interval auto-tuning (4 % of accesses in 3 aggregations,
  5 ms..10 s sampling), a 200 MB/s size quota on both schemes, the goal
  ``node_mem_free_bp`` 0.5 % on the DRAM node for demotion and
  ``node_mem_used_bp`` 99.7 % on the DRAM node for promotion, and young-page
  filters (demotion rejects young pages, promotion allows only them).

A damo JSON file is what ``damo args damon --format json`` prints (a
``kdamonds`` object), or a list of schemes (``damo args damos``) applied to
one vaddr context on the workload's process.  Values may be damo's human
strings ("5 ms", "200 MiB", "0 %", "max") or raw numbers.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import field

from cxlemu.util.lazydc import dataclass

ULONG_MAX = (1 << 64) - 1
ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"
RECIPES = ("hot_cold", "mem_tier")


class DamosSetupError(ValueError):
    pass


# ---- damo's value strings ------------------------------------------------------------------------------
_SZ = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
       "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
       "p": 1 << 50, "pb": 1 << 50, "pib": 1 << 50}
_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
       "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_NUM = re.compile(r"^\s*([-+]?[0-9][0-9,]*(?:\.[0-9]+)?)\s*([a-zA-Z%]*)\s*$")


def _split(v) -> tuple[float, str]:
    if isinstance(v, bool):
        raise DamosSetupError(f"not a value: {v!r}")
    if isinstance(v, (int, float)):
        return float(v), ""
    m = _NUM.match(str(v))
    if not m:
        raise DamosSetupError(f"not a value: {v!r}")
    return float(m.group(1).replace(",", "")), m.group(2)


def parse_bytes(v) -> int:
    if v in ("max", None):
        return ULONG_MAX
    if v == "min":
        return 0
    x, u = _split(v)
    k = _SZ.get(u.lower(), None) if u else 1
    if k is None:
        raise DamosSetupError(f"not a size: {v!r}")
    return int(x * k)


def parse_us(v) -> int:
    if v in ("max", None):
        return ULONG_MAX
    if v == "min":
        return 0
    if isinstance(v, str) and len(v.split()) > 2:          # "1 s 500 ms"
        parts = v.split()
        return sum(parse_us(" ".join(parts[i:i + 2])) for i in range(0, len(parts), 2))
    x, u = _split(v)
    if not u:
        return int(x)
    if u.lower() not in _NS:
        raise DamosSetupError(f"not a time: {v!r}")
    return int(x * _NS[u.lower()] // 1000)


def parse_nr(v) -> int:
    if v in ("max", None):
        return ULONG_MAX
    if v == "min":
        return 0
    x, u = _split(v)
    if u:
        raise DamosSetupError(f"not a number: {v!r}")
    return int(x)


def parse_bp(v) -> int:
    """A ratio in basis points: "4 %" -> 400, "99.7%" -> 9970, a bare number is bp."""
    x, u = _split(v)
    if u == "%":
        return int(round(x * 100))
    if u:
        raise DamosSetupError(f"not a ratio: {v!r}")
    return int(x)


# ---- the setup, as data --------------------------------------------------------------------------------
@dataclass
class SchemeSpec:
    action: str = "stat"
    sz: tuple[int, int] = (0, ULONG_MAX)
    nr_accesses_pct: tuple[float, float] | None = (0.0, 100.0)      # percent of the samples per aggregation
    nr_accesses: tuple[int, int] | None = None                       # or raw samples
    age_us: tuple[int, int] | None = None
    age: tuple[int, int] = (0, ULONG_MAX)                            # aggregation intervals
    apply_interval_us: int = 0
    target_nid: int = -1
    dests: list[tuple[int, int]] = field(default_factory=list)
    quota_ms: int = 0
    quota_bytes: int = 0
    quota_reset_ms: int = 0
    weights: tuple[int, int, int] = (0, 0, 0)
    goals: list[dict] = field(default_factory=list)                  # metric, target_value, current_value, nid, path
    wmarks: tuple = ("none", 0, 0, 0, 0)
    filters: list[dict] = field(default_factory=list)                # type, matching, allow, + type args


@dataclass
class KdamondSpec:
    ops: str = "paddr"
    numa_node: int | None = None
    pid: int | str | None = None          # "workload": the run's process
    regions: list[tuple[int, int]] = field(default_factory=list)
    sample_us: int = 5000
    aggr_us: int = 100000
    update_us: int = 1_000_000
    goal: tuple[int, int, int, int] = (0, 0, 0, 0)
    nr_regions: tuple[int, int] = (10, 1000)
    schemes: list[SchemeSpec] = field(default_factory=list)


def node_roles(backend) -> tuple[list[int], list[int]]:
    """(DRAM nodes: memory nodes with CPUs, CXL nodes: memory nodes without CPUs), from sysfs."""
    def nodes(name: str) -> list[int]:
        try:
            return parse_nodelist(backend.read(f"/sys/devices/system/node/{name}").strip())
        except OSError:
            return []
    mem = nodes("has_memory")
    cpu = set(nodes("has_cpu"))
    return [n for n in mem if n in cpu], [n for n in mem if n not in cpu]


def parse_nodelist(s: str) -> list[int]:
    out: list[int] = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def recipe(name: str, backend) -> list[KdamondSpec]:
    fast, slow = node_roles(backend)
    if not fast or not slow:
        raise DamosSetupError(f"--damos {name}: needs a DRAM node and a CPU-less (CXL) memory node "
                              f"(this machine has memory nodes {sorted(fast + slow)})")
    f, s = fast[0], slow[0]
    if name == "hot_cold":
        return [
            KdamondSpec("paddr", numa_node=f, schemes=[SchemeSpec(
                "migrate_cold", nr_accesses_pct=(0, 0), apply_interval_us=1_000_000, target_nid=s)]),
            KdamondSpec("paddr", numa_node=s, schemes=[SchemeSpec(
                "migrate_hot", nr_accesses_pct=(5, 100), apply_interval_us=1_000_000, target_nid=f)]),
        ]
    if name == "mem_tier":
        goal = (400, 3, 5000, 10_000_000)
        return [
            KdamondSpec("paddr", numa_node=f, goal=goal, schemes=[SchemeSpec(
                "migrate_cold", nr_accesses_pct=(0, 0), apply_interval_us=1_000_000, target_nid=s,
                quota_bytes=200 << 20, quota_reset_ms=1000,
                goals=[{"metric": "node_mem_free_bp", "target_value": 50, "nid": f}],
                filters=[{"type": "young", "matching": True, "allow": False}])]),
            KdamondSpec("paddr", numa_node=s, goal=goal, schemes=[SchemeSpec(
                "migrate_hot", nr_accesses_pct=(5, 100), apply_interval_us=1_000_000, target_nid=f,
                quota_bytes=200 << 20, quota_reset_ms=1000,
                goals=[{"metric": "node_mem_used_bp", "target_value": 9970, "nid": f}],
                filters=[{"type": "young", "matching": True, "allow": True}])]),
        ]
    raise DamosSetupError(f"--damos: unknown recipe {name!r} (recipes: {', '.join(RECIPES)}; or a damo JSON file)")


# ---- damo JSON --------------------------------------------------------------------------------------
def _scheme_from_json(d: dict, where: str) -> SchemeSpec:
    if not isinstance(d, dict):
        raise DamosSetupError(f"{where}: a scheme must be an object")
    s = SchemeSpec()
    s.action = str(d.get("action", "stat"))
    ap = d.get("access_pattern") or {}
    szr = ap.get("sz_bytes") or {}
    s.sz = (parse_bytes(szr.get("min", 0)), parse_bytes(szr.get("max", "max")))
    nr = ap.get("nr_accesses") or {}
    lo, hi = nr.get("min", "0 %"), nr.get("max", "100 %")
    if isinstance(lo, dict):            # damo's raw kvpairs: {"samples": .., "percent": ..}
        lo = lo.get("samples") if lo.get("samples") is not None else f"{lo.get('percent')} %"
        hi = hi.get("samples") if hi.get("samples") is not None else f"{hi.get('percent')} %"
    if str(lo).strip().endswith("%") or str(hi).strip().endswith("%"):
        s.nr_accesses_pct = (_split(lo)[0] if lo != "min" else 0.0, 100.0 if hi == "max" else _split(hi)[0])
    else:
        s.nr_accesses_pct = None
        s.nr_accesses = (parse_nr(lo), parse_nr(hi))
    age = ap.get("age") or {}
    alo, ahi = age.get("min", "0 ns"), age.get("max", "max")
    if any(isinstance(x, str) and x.strip().endswith("aggr_intervals") for x in (alo, ahi)):
        s.age = tuple(parse_nr(str(x).replace("aggr_intervals", "").strip()) if x not in ("max", "min") else
                      (ULONG_MAX if x == "max" else 0) for x in (alo, ahi))
    else:
        s.age_us = (parse_us(alo), parse_us(ahi))
    s.apply_interval_us = parse_us(d.get("apply_interval_us", 0) or 0)
    tn = d.get("target_nid")
    s.target_nid = int(tn) if tn not in (None, "") else -1
    s.dests = [(int(x.get("id", 0)), int(x.get("weight", 0))) for x in d.get("dests") or []]
    q = d.get("quotas") or {}
    s.quota_ms = _ms(q.get("time_ms", q.get("ms", 0)) or 0)
    s.quota_bytes = parse_bytes(q.get("sz_bytes", q.get("bytes", 0)) or 0)
    s.quota_reset_ms = _ms(q.get("reset_interval_ms", 0) or 0)
    w = q.get("weights") or {}
    # damo prints permil weights as percentages ("0.1 %" is 1 permil)
    s.weights = (_permil(w.get("sz_permil", 0)), _permil(w.get("nr_accesses_permil", 0)),
                 _permil(w.get("age_permil", 0)))
    for g in q.get("goals") or []:
        s.goals.append({"metric": g.get("metric", "user_input"), "target_value": _goal_value(g.get("target_value", 0)),
                        "current_value": _goal_value(g.get("current_value", 0)),
                        "nid": int(g.get("nid") or 0), "path": g.get("memcg_path") or ""})
    wm = d.get("watermarks") or {}
    if wm:
        s.wmarks = (wm.get("metric", "none"), parse_us(wm.get("interval_us", 0)),
                    *(_permil(wm.get(f"{x}_permil", wm.get(x, 0))) for x in ("high", "mid", "low")))
    for f in d.get("filters") or []:
        ent = {"type": f.get("filter_type", f.get("type")), "matching": _bool(f.get("matching", True)),
               "allow": _bool(f.get("allow", f.get("pass", False)))}
        if f.get("memcg_path"):
            ent["memcg_path"] = f["memcg_path"]
        if f.get("address_range"):
            ent["addr_start"] = parse_nr(f["address_range"].get("start", 0))
            ent["addr_end"] = parse_nr(f["address_range"].get("end", 0))
        if f.get("damon_target_idx") is not None:
            ent["damon_target_idx"] = int(f["damon_target_idx"])
        if f.get("hugepage_size"):
            hs = f["hugepage_size"]
            ent["min"], ent["max"] = parse_bytes(hs[0]), parse_bytes(hs[1])
        s.filters.append(ent)
    return s


def _ms(v) -> int:
    """A milliseconds field: damo prints it as a time ("1 s"), a bare number or "max"."""
    if v in ("max", None):
        return ULONG_MAX
    if isinstance(v, str) and _split(v.split()[0] if len(v.split()) > 2 else v)[1]:
        return parse_us(v) // 1000
    return int(parse_nr(v))


def _goal_value(v) -> int:
    if isinstance(v, str) and v.strip().endswith("%"):
        return parse_bp(v)
    return int(parse_nr(v))


def _permil(v) -> int:
    if isinstance(v, str) and v.strip().endswith("%"):
        return int(round(_split(v)[0] * 10))
    return int(parse_nr(v))


def _bool(v) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("y", "yes", "true", "1")


def from_damo_json(text: str) -> list[KdamondSpec]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DamosSetupError(f"not JSON ({e.msg} at line {e.lineno})") from None
    try:
        if isinstance(doc, list):
            return [KdamondSpec("vaddr", pid="workload",
                                schemes=[_scheme_from_json(x, f"scheme {i}") for i, x in enumerate(doc)])]
        if isinstance(doc, dict) and "schemes" in doc and "kdamonds" not in doc:
            return from_damo_json(json.dumps(doc["schemes"]))
        if not isinstance(doc, dict) or not isinstance(doc.get("kdamonds"), list):
            raise DamosSetupError("expected damo's kdamonds object or a list of schemes")
        out = []
        for ki, kd in enumerate(doc["kdamonds"]):
            ctxs = kd.get("contexts") or []
            for ci, c in enumerate(ctxs):
                where = f"kdamonds[{ki}].contexts[{ci}]"
                k = KdamondSpec(str(c.get("ops", "vaddr")))
                it = c.get("intervals") or {}
                k.sample_us = parse_us(it.get("sample_us", "5 ms"))
                k.aggr_us = parse_us(it.get("aggr_us", "100 ms"))
                k.update_us = parse_us(it.get("ops_update_us", "1 s"))
                g = it.get("intervals_goal") or {}
                if g:
                    k.goal = (parse_bp(g.get("access_bp", 0)), int(parse_nr(g.get("aggrs", 0))),
                              parse_us(g.get("min_sample_us", 0)), parse_us(g.get("max_sample_us", 0)))
                nrr = c.get("nr_regions") or {}
                k.nr_regions = (int(parse_nr(nrr.get("min", 10))), int(parse_nr(nrr.get("max", 1000))))
                tg = (c.get("targets") or [{}])[0]
                pid = tg.get("pid")
                if k.ops in ("vaddr", "fvaddr"):
                    k.pid = "workload" if pid in (None, "", "workload") else int(pid)
                k.regions = [(int(parse_nr(r["start"])), int(parse_nr(r["end"]))) for r in tg.get("regions") or []]
                k.schemes = [_scheme_from_json(x, f"{where}.schemes[{i}]") for i, x in enumerate(c.get("schemes") or [])]
                out.append(k)
        if not out:
            raise DamosSetupError("no kdamond context in the file")
        return out
    except (KeyError, TypeError, AttributeError) as e:
        raise DamosSetupError(f"unexpected damo JSON ({e})") from None


def resolve(arg: str, backend) -> list[KdamondSpec]:
    """``--damos`` argument: a recipe name or a damo JSON file."""
    if arg in RECIPES:
        return recipe(arg, backend)
    try:
        with open(arg) as f:
            text = f.read()
    except FileNotFoundError:
        raise DamosSetupError(f"--damos: {arg!r} is neither a recipe ({', '.join(RECIPES)}) nor a file") from None
    except OSError as e:
        raise DamosSetupError(f"--damos: {arg}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise DamosSetupError(f"--damos: {arg}: not a text file") from None
    try:
        return from_damo_json(text)
    except DamosSetupError as e:
        raise DamosSetupError(f"--damos: {arg}: {e}") from None


# ---- staging through sysfs ---------------------------------------------------------------------------------
def numa_node_ranges(backend, nid: int) -> list[tuple[int, int]]:
    """The physical ranges of a node's online memory blocks (as damo's
    ``--numa_node``: /sys/devices/system/node/nodeN/memoryM)."""
    bs = int(backend.read("/sys/devices/system/memory/block_size_bytes").strip(), 16)
    d = f"/sys/devices/system/node/node{nid}"
    ids = []
    for e in backend.listdir(d):
        if e.startswith("memory") and e[6:].isdigit():
            ids.append(int(e[6:]))
    ids.sort()
    out: list[list[int]] = []
    for i in ids:
        try:
            if backend.read(f"/sys/devices/system/memory/memory{i}/state").strip() != "online":
                continue
        except OSError:
            continue
        s, e = i * bs, (i + 1) * bs
        if out and out[-1][1] == s:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]


def _w(backend, path: str, value) -> None:
    try:
        backend.write(path, f"{value}")
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else (e.strerror or str(e))
        raise DamosSetupError(f"writing {value!r} to {path}: {why}") from None


def stage(backend, specs: list[KdamondSpec], workload_pid: int | None = None) -> None:
    """Write the kdamonds' parameters (damo's stage_kdamonds)."""
    _w(backend, f"{ADMIN}/nr_kdamonds", len(specs))
    for i, k in enumerate(specs):
        kd = f"{ADMIN}/{i}"
        _w(backend, f"{kd}/contexts/nr_contexts", 1)
        c = f"{kd}/contexts/0"
        _w(backend, f"{c}/operations", k.ops)
        ia = f"{c}/monitoring_attrs/intervals"
        _w(backend, f"{ia}/sample_us", k.sample_us)
        _w(backend, f"{ia}/aggr_us", k.aggr_us)
        _w(backend, f"{ia}/update_us", k.update_us)
        for name, v in zip(("access_bp", "aggrs", "min_sample_us", "max_sample_us"), k.goal):
            _w(backend, f"{ia}/intervals_goal/{name}", v)
        _w(backend, f"{c}/monitoring_attrs/nr_regions/min", k.nr_regions[0])
        _w(backend, f"{c}/monitoring_attrs/nr_regions/max", k.nr_regions[1])
        _w(backend, f"{c}/targets/nr_targets", 1)
        t = f"{c}/targets/0"
        regions = list(k.regions)
        if k.ops == "paddr" and not regions:
            if k.numa_node is None:
                raise DamosSetupError("a paddr kdamond needs regions or a NUMA node")
            regions = numa_node_ranges(backend, k.numa_node)
        if k.ops in ("vaddr", "fvaddr"):
            pid = workload_pid if k.pid in (None, "workload") else k.pid
            if pid is None:
                raise DamosSetupError("a vaddr kdamond needs a process")
            _w(backend, f"{t}/pid_target", pid)
        _w(backend, f"{t}/regions/nr_regions", len(regions))
        for j, (a, b) in enumerate(regions):
            _w(backend, f"{t}/regions/{j}/start", a)
            _w(backend, f"{t}/regions/{j}/end", b)
        _w(backend, f"{c}/schemes/nr_schemes", len(k.schemes))
        max_nr = max(1, k.aggr_us // max(k.sample_us, 1))
        for j, s in enumerate(k.schemes):
            stage_scheme(backend, f"{c}/schemes/{j}", s, k, max_nr)


def stage_scheme(backend, d: str, s: SchemeSpec, k: KdamondSpec, max_nr: int) -> None:
    _w(backend, f"{d}/action", s.action)
    if s.nr_accesses is not None:
        lo, hi = s.nr_accesses
    else:
        plo, phi = s.nr_accesses_pct
        lo = int(plo * max_nr / 100)
        hi = ULONG_MAX if phi >= 100 else int(phi * max_nr / 100)
    if s.age_us is not None:
        alo = s.age_us[0] // max(k.aggr_us, 1)
        ahi = ULONG_MAX if s.age_us[1] >= ULONG_MAX else s.age_us[1] // max(k.aggr_us, 1)
    else:
        alo, ahi = s.age
    ap = f"{d}/access_pattern"
    for name, (a, b) in (("sz", s.sz), ("nr_accesses", (lo, hi)), ("age", (alo, ahi))):
        _w(backend, f"{ap}/{name}/min", min(a, ULONG_MAX))
        _w(backend, f"{ap}/{name}/max", min(b, ULONG_MAX))
    _w(backend, f"{d}/apply_interval_us", s.apply_interval_us)
    _w(backend, f"{d}/target_nid", s.target_nid)
    _w(backend, f"{d}/dests/nr_dests", len(s.dests))
    for j, (nid, w) in enumerate(s.dests):
        _w(backend, f"{d}/dests/{j}/id", nid)
        _w(backend, f"{d}/dests/{j}/weight", w)
    q = f"{d}/quotas"
    _w(backend, f"{q}/ms", s.quota_ms)
    _w(backend, f"{q}/bytes", s.quota_bytes)
    _w(backend, f"{q}/reset_interval_ms", s.quota_reset_ms)
    for name, v in zip(("sz_permil", "nr_accesses_permil", "age_permil"), s.weights):
        _w(backend, f"{q}/weights/{name}", v)
    _w(backend, f"{q}/goals/nr_goals", len(s.goals))
    for j, g in enumerate(s.goals):
        gd = f"{q}/goals/{j}"
        _w(backend, f"{gd}/target_metric", g["metric"])
        _w(backend, f"{gd}/target_value", g["target_value"])
        _w(backend, f"{gd}/current_value", g.get("current_value", 0))
        _w(backend, f"{gd}/nid", g.get("nid", 0))
        if g.get("path"):
            _w(backend, f"{gd}/path", g["path"])
    wm = f"{d}/watermarks"
    for name, v in zip(("metric", "interval_us", "high", "mid", "low"), s.wmarks):
        _w(backend, f"{wm}/{name}", v)
    core = [f for f in s.filters if f.get("type") in ("addr", "target")]
    ops = [f for f in s.filters if f.get("type") not in ("addr", "target")]
    for sub, lst in (("core_filters", core), ("ops_filters", ops)):
        _w(backend, f"{d}/{sub}/nr_filters", len(lst))
        for j, f in enumerate(lst):
            fd = f"{d}/{sub}/{j}"
            _w(backend, f"{fd}/type", f["type"])
            for key in ("memcg_path", "addr_start", "addr_end", "min", "max", "damon_target_idx"):
                if key in f:
                    _w(backend, f"{fd}/{key}", f[key])
            _w(backend, f"{fd}/matching", "Y" if f.get("matching", True) else "N")
            _w(backend, f"{fd}/allow", "Y" if f.get("allow", False) else "N")


def turn_on(backend, n: int) -> None:
    for i in range(n):
        _w(backend, f"{ADMIN}/{i}/state", "on")


def running_kdamonds(backend) -> list[int]:
    """The kdamonds whose state is ``on``."""
    try:
        n = int(backend.read(f"{ADMIN}/nr_kdamonds").strip())
    except OSError:
        return []
    return [i for i in range(n) if backend.read(f"{ADMIN}/{i}/state").strip() == "on"]


def turn_off(backend) -> None:
    try:
        n = int(backend.read(f"{ADMIN}/nr_kdamonds").strip())
    except OSError:
        return
    for i in range(n):
        if backend.read(f"{ADMIN}/{i}/state").strip() == "on":
            _w(backend, f"{ADMIN}/{i}/state", "off")


def collect_stats(backend) -> list[dict]:
    """Per kdamond: its schemes' stats (after ``update_schemes_stats``)."""
    out = []
    n = int(backend.read(f"{ADMIN}/nr_kdamonds").strip())
    for i in range(n):
        kd = f"{ADMIN}/{i}"
        running = backend.read(f"{kd}/state").strip() == "on"
        if running:
            _w(backend, f"{kd}/state", "update_schemes_stats")
            _w(backend, f"{kd}/state", "update_schemes_effective_quotas")
            _w(backend, f"{kd}/state", "update_tuned_intervals")
        c = f"{kd}/contexts/0"
        ent = {"kdamond": i, "ops": backend.read(f"{c}/operations").strip(),
               "sample_us": int(backend.read(f"{c}/monitoring_attrs/intervals/sample_us")),
               "aggr_us": int(backend.read(f"{c}/monitoring_attrs/intervals/aggr_us")), "schemes": []}
        ns = int(backend.read(f"{c}/schemes/nr_schemes"))
        for j in range(ns):
            sd = f"{c}/schemes/{j}"
            st = {k: int(backend.read(f"{sd}/stats/{k}")) for k in
                  ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "sz_ops_filter_passed", "qt_exceeds")}
            st["action"] = backend.read(f"{sd}/action").strip()
            st["target_nid"] = int(backend.read(f"{sd}/target_nid"))
            st["effective_bytes"] = int(backend.read(f"{sd}/quotas/effective_bytes"))
            ent["schemes"].append(st)
        out.append(ent)
    return out
