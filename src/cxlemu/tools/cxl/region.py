"""``cxl create-region``, ``enable-region``, ``disable-region`` and
``destroy-region`` (cxl/region.c, ndctl v81), over :mod:`cxlemu.tools.libcxl`.

Behaviour reproduced (messages go to the "cxl region" log, whose priority
is INFO after option parsing, DEBUG with ``--debug``):

create-region, validation in this order (each failure exits 1 after
``created 0 regions``):

1. ``no root decoder specified``;
2. positional arguments without ``-m``: ``must specify option for target
   object types (-m)`` (no arguments at all imply ``-m``);
3. the memdevs are those ``cxl list -M -d <decoder> -m <args>`` would show,
   sorted into command-line order; none: ``no active memdevs found:
   decoder: %s filter: %s`` (the filter is the arguments joined by commas,
   with ``to_csv()``'s trailing-comma quirk);
4. ``can't set UUID for ram / volatile regions`` (printed without a newline,
   as the C format string has none), ``unsupported type: %s``;
5. ``Invalid size: %s``, ``Invalid interleave ways: %d``, ``Interleave ways
   %d is greater|less than number of memdevs specified|found: %d``,
   ``Invalid interleave granularity: %d``, ``size (%lu) is not an integral
   multiple of interleave-ways (%u)``, then ``  Error: failed to parse uuid:
   '%s'`` (usage.c ``error()``);
6. the root decoder (first match of ``-d`` on a bus matching ``-b``):
   ``%s not found in CXL topology``; the type defaults to its capability
   (pmem wins when both); ``%s is not volatile|pmem capable``; with ``-Q``
   ``%s qos_class mismatch %s``;
7. the size defaults to the smallest ram/pmem capacity of the first ``ways``
   memdevs times ``ways``; an explicit size above the root decoder's
   ``max_available_extent`` fails with ``%s: region size %#lx exceeds max
   available space (%#lx)``, a default one is clamped with util/size.h
   ``ALIGN_DOWN(max_extent, 256MiB * ways)`` (bit-mask arithmetic, also for
   3, 6 and 12 ways).

Then the sysfs writes of libcxl, in order: ``create_<type>_region`` (read,
write back), ``interleave_granularity``, ``interleave_ways``, ``uuid``
(pmem), ``size``, per memdev the first endpoint decoder whose ``size`` is 0
(``dpa_size`` <- 0 and ``mode`` when the mode differs, ``dpa_size``
<- size/ways), ``target<i>``, ``commit``, bind.  Any failure after the
region exists deletes it (``delete_region``); a user granularity on an
interleaved root must equal the root's (``%s: For an x%d root, only root
decoder granularity (%d) permitted``).  On success the region JSON (with
targets, human-readable on a TTY) goes to stdout.

enable/disable/destroy-region act on every region of every root decoder
(filtered by ``-b``/``-d``) matching one of the arguments (name, id or
``all``); no argument means no region and exit 0.  disable-region first
offlines the online memory of system-ram dax devices of the region
(``%s: unable to offline %s: %s``; with ``-f`` it goes on and warns that
the address space leaks).  destroy-region refuses an enabled region without
``-f`` (``%s active. Disable it or use --force``), then resets the decode,
clears each target and frees its DPA, and deletes the region.  Failures
print ``%s: failed: %s`` and ``one or more failures, last failure: %s``.
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from dataclasses import field
from typing import Any, Callable

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import JSON_C_TO_STRING_PRETTY, dumps
from cxlemu.tools.common.log import LOG_DEBUG, LOG_INFO, Log
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_INTEGER, OPT_STRING, error_text,
                                               parse_options)
from cxlemu.tools.common.util_json import UTIL_JSON_HUMAN, UTIL_JSON_TARGETS, hex_text, parse_size64
from cxlemu.tools.libcxl import CxlContext, Decoder, DecoderMode, Memdev, Region, mode_from_ident
from cxlemu.tools.libcxl.cnum import U32_MAX, U64_MAX, to_u64
from cxlemu.tools.libcxl.memdev import CXL_QOS_CLASS_NONE
from cxlemu.tools.libcxl.region import uuid_parse
from cxlemu.tools.libcxl.sysfs import strerror
from cxlemu.util.lazydc import dataclass

from . import json as cj
from .filter import FilterParams, _args, bus_filter, decoder_filter, memdev_filter, region_filter
from .walk import filter_walk

__all__ = ["cmd_create_region", "cmd_enable_region", "cmd_disable_region", "cmd_destroy_region",
           "to_csv", "align_down", "CREATE_OPTIONS", "ENABLE_OPTIONS", "DISABLE_OPTIONS",
           "DESTROY_OPTIONS"]

INT_MAX = (1 << 31) - 1
SZ_256M = 0x10000000
ULLONG_MAX = U64_MAX


# ---------------------------------------------------------------------------
# option tables (region.c BASE_OPTIONS / CREATE_OPTIONS)
# ---------------------------------------------------------------------------

def _base_options() -> list:
    return [
        OPT_STRING("b", "bus", "bus", "bus name", "Limit operation to the specified bus"),
        OPT_STRING("d", "decoder", "root_decoder", "root decoder name",
                   "Limit to / use the specified root decoder"),
        OPT_BOOLEAN(None, "debug", "debug", "turn on debug"),
    ]


CREATE_OPTIONS = _base_options() + [
    OPT_STRING("s", "size", "size", "size in bytes or with a K/M/G etc. suffix",
               "total size desired for the resulting region."),
    OPT_INTEGER("w", "ways", "ways", "number of memdevs participating in the regions interleave set"),
    OPT_INTEGER("g", "granularity", "granularity", "granularity of the interleave set"),
    OPT_STRING("t", "type", "type", "region type", "region type - 'pmem' or 'ram'"),
    OPT_STRING("U", "uuid", "uuid", "region uuid", "uuid for the new region (default: autogenerate)"),
    OPT_BOOLEAN("m", "memdevs", "memdevs", "non-option arguments are memdevs"),
    OPT_BOOLEAN("u", "human", "human", "use human friendly number formats"),
    OPT_BOOLEAN("Q", "enforce-qos", "enforce_qos", "enforce qos_class match"),
    OPT_END(),
]
ENABLE_OPTIONS = _base_options() + [OPT_END()]
DISABLE_OPTIONS = _base_options() + [
    OPT_BOOLEAN("f", "force", "force", "attempt to offline memory before disabling the region"),
    OPT_END(),
]
DESTROY_OPTIONS = _base_options() + [
    OPT_BOOLEAN("f", "force", "force", "destroy region even if currently active"),
    OPT_END(),
]

_USAGE = {
    "create": "cxl create-region <target0> ... [<options>]",
    "enable": "cxl enable-region <region0> ... [<options>]",
    "disable": "cxl disable-region <region0> ... [<options>]",
    "destroy": "cxl destroy-region <region0> ... [<options>]",
}


# ---------------------------------------------------------------------------
# pure helpers
# ---------------------------------------------------------------------------

def to_csv(strings: list[str]) -> tuple[str | None, int]:
    """region.c ``to_csv()``: flatten arguments that may themselves be
    comma or space separated lists; returns ``(csv, token_count)``.

    The C code appends a comma after every token of argument ``i`` while
    ``i + 1 < token_count`` (``i`` counts arguments, not tokens), so a
    single argument ``"mem0,mem1"`` becomes ``"mem0,mem1,"``.
    """
    if not strings:
        return None, 0
    per_arg = [_args(s) for s in strings]
    count = sum(len(t) for t in per_arg)
    parts = []
    for i, toks in enumerate(per_arg):
        for tok in toks:
            parts.append(tok + ("," if i + 1 < count else ""))
    return "".join(parts), count


def align_down(x: int, a: int) -> int:
    """util/size.h ``ALIGN_DOWN(x, a)``: ``((x + a) & ~(a - 1)) - a`` in
    unsigned 64-bit arithmetic (only a true round-down for powers of 2)."""
    return to_u64((to_u64(x + a) & to_u64(~(a - 1))) - a)


def _pos_in_csv(md: Memdev, csv: str) -> int:
    """``memdev_filter_pos()``: index of the first token naming ``md``."""
    for pos, tok in enumerate(_args(csv)):
        if memdev_filter(md, tok, None):
            return pos
    return len(_args(csv))


# ---------------------------------------------------------------------------
# shared state of one invocation
# ---------------------------------------------------------------------------

@dataclass
class _Params:
    """``struct parsed_params`` plus the parsed option values."""

    opts: dict[str, Any]
    args: list[str]
    size: int = 0
    ep_min_size: int = 0
    ways: int = 0
    granularity: int = 0
    uuid: bytes | None = None
    memdevs: list[Memdev] = field(default_factory=list)
    root_decoder: Decoder | None = None
    mode: DecoderMode = DecoderMode.NONE
    enforce_qos: bool = False


@dataclass
class _Run:
    ctx: CommandContext
    lib: CxlContext
    rl: Log

    def err(self, func: str, msg: str, raw: bool = False) -> None:
        self.rl.err(func, msg, raw)


def _start(action: str, argv: list[str], ctx: CommandContext, options: list) -> tuple[_Run, _Params]:
    """``region_action()`` up to option parsing (``parse_region_options``)."""
    rl = Log.init("cxl region", "CXL_REGION_LOG", ctx.env, stream=ctx.stderr)
    lib = CxlContext(ctx.backend, ctx.env, ctx.stderr)
    parsed = parse_options(argv, options, [_USAGE[action]],
                           values={"ways": INT_MAX, "granularity": INT_MAX}, stderr=ctx.stderr)
    if parsed.values.get("debug"):
        lib.set_log_priority(LOG_DEBUG)
        rl.priority = LOG_DEBUG
    else:
        rl.priority = LOG_INFO
    return _Run(ctx, lib, rl), _Params(parsed.values, list(parsed.args))


# ---------------------------------------------------------------------------
# create-region: option validation (parse_create_options)
# ---------------------------------------------------------------------------

def _collect_memdevs(run: _Run, decoder: str, mems: list[str]) -> tuple[list[Memdev] | None, int]:
    """``collect_memdevs()``: returns (memdevs or None, argument token count)."""
    csv, count = to_csv(mems)
    fp = FilterParams(decoder_filter=decoder, memdevs=True, memdev_filter=csv)
    fp.log = Log("cxl list", stream=run.ctx.stderr)
    jmemdevs = filter_walk(run.lib, fp, run.ctx.stderr)
    found: list[Memdev] = []
    for j in jmemdevs:
        md = run.lib.memdev_by_devname(j.get("memdev", "")) if isinstance(j, dict) else None
        if md is not None:
            found.append(md)
    if not found:
        run.err("collect_memdevs", f"no active memdevs found: decoder: {decoder} "
                                   f"filter: {csv if csv is not None else 'none'}")
        return None, count
    if csv is not None:
        found.sort(key=lambda m: _pos_in_csv(m, csv))
    return found, count


def _validate_ways(run: _Run, p: _Params, count: int) -> bool:
    n = len(p.memdevs)
    if p.ways > n or (count and p.ways != n):
        run.err("validate_ways",
                f"Interleave ways {p.ways} is {'greater' if p.ways > n else 'less'} than number of "
                f"memdevs {'specified' if count else 'found'}: {n}")
        return False
    return True


def _parse_create_options(run: _Run, p: _Params) -> int:
    o = p.opts
    func = "parse_create_options"
    if not o.get("root_decoder"):
        run.err(func, "no root decoder specified")
        return -errno.EINVAL
    count = len(p.args)
    memdevs_opt = bool(o.get("memdevs")) or count == 0
    if not memdevs_opt:
        run.err(func, "must specify option for target object types (-m)")
        return -errno.EINVAL
    found, count = _collect_memdevs(run, o["root_decoder"], p.args)
    if found is None:
        return -errno.ENXIO
    p.memdevs = found
    n = len(found)

    if o.get("type") is not None:
        p.mode = mode_from_ident(o["type"])
        if p.mode == DecoderMode.RAM and o.get("uuid") is not None:
            run.err(func, "can't set UUID for ram / volatile regions", raw=True)
            return -errno.EINVAL
        if p.mode == DecoderMode.NONE:
            run.err(func, f"unsupported type: {o['type']}")
            return -errno.EINVAL
    else:
        p.mode = DecoderMode.PMEM

    if o.get("size") is not None:
        p.size = parse_size64(o["size"])
        if p.size == ULLONG_MAX:
            run.err(func, f"Invalid size: {o['size']}")
            return -errno.EINVAL

    ways = int(o.get("ways", INT_MAX))
    if ways <= 0:
        run.err(func, f"Invalid interleave ways: {ways}")
        return -errno.EINVAL
    if ways < INT_MAX:
        p.ways = ways
        if not _validate_ways(run, p, count):
            return -errno.EINVAL
    elif count:
        p.ways = count
        if not _validate_ways(run, p, count):
            return -errno.EINVAL
    else:
        p.ways = n

    gran = int(o.get("granularity", INT_MAX))
    if gran < INT_MAX:
        if gran <= 0:
            run.err(func, f"Invalid interleave granularity: {gran}")
            return -errno.EINVAL
        p.granularity = gran

    if p.size and p.ways and p.size % p.ways:
        run.err(func, f"size ({p.size}) is not an integral multiple of interleave-ways ({p.ways})")
        return -errno.EINVAL

    if o.get("uuid") is not None:
        u = uuid_parse(o["uuid"])
        if u is None:
            run.ctx.stderr.write(error_text(f"failed to parse uuid: '{o['uuid']}'\n"))
            return -errno.EINVAL
        p.uuid = u
    p.enforce_qos = bool(o.get("enforce_qos"))
    return 0


# ---------------------------------------------------------------------------
# create-region: topology validation and the sysfs sequence
# ---------------------------------------------------------------------------

def _validate_config(run: _Run, p: _Params) -> int:
    """``create_region_validate_config()`` with ``set_type_from_decoder``,
    ``validate_decoder``, ``create_region_validate_qos_class`` and
    ``collect_minsize``."""
    o = p.opts
    for bus in run.lib.buses():
        if not bus_filter(bus, o.get("bus")):
            continue
        if not bus.is_root():
            continue
        for dec in bus.decoders():
            if decoder_filter(dec, o["root_decoder"]):
                p.root_decoder = dec
                break
        if p.root_decoder is not None:
            break
    rd = p.root_decoder
    if rd is None:
        run.err("create_region_validate_config", f"{o['root_decoder']} not found in CXL topology")
        return -errno.ENXIO
    if o.get("type") is None:
        if rd.volatile_capable:
            p.mode = DecoderMode.RAM
        if rd.pmem_capable:
            p.mode = DecoderMode.PMEM
    if p.mode == DecoderMode.RAM:
        if not rd.volatile_capable:
            run.err("validate_decoder", f"{rd.devname} is not volatile capable")
            return -errno.EINVAL
    elif p.mode == DecoderMode.PMEM:
        if not rd.pmem_capable:
            run.err("validate_decoder", f"{rd.devname} is not pmem capable")
            return -errno.EINVAL
    else:
        run.err("validate_decoder", f"unknown type: {o.get('type')}")
        return -errno.EINVAL
    if p.enforce_qos:
        root_qos = rd.root_qos_class()
        if root_qos != CXL_QOS_CLASS_NONE:
            for md in p.memdevs[:p.ways]:
                qos = md.ram_qos_class if p.mode == DecoderMode.RAM else md.pmem_qos_class
                if qos == CXL_QOS_CLASS_NONE:
                    break
                if qos != root_qos:
                    run.err("create_region_validate_qos_class",
                            f"{rd.devname} qos_class mismatch {md.devname}")
                    return -errno.ENXIO
    for md in p.memdevs[:p.ways]:
        size = md.ram_size if p.mode == DecoderMode.RAM else md.pmem_size
        p.ep_min_size = size if not p.ep_min_size else min(p.ep_min_size, size)
    return 0


def _find_free_decoder(run: _Run, md: Memdev) -> Decoder | None:
    """region.c ``cxl_memdev_find_decoder()``: the first endpoint decoder
    whose (HPA) size is 0."""
    ep = md.endpoint
    if ep is None:
        run.err("cxl_memdev_find_decoder", f"could not get an endpoint for {md.devname}")
        return None
    for dec in ep.decoders():
        if dec.size == 0:
            return dec
    run.err("cxl_memdev_find_decoder", f"could not get a free decoder for {md.devname}")
    return None


def _determine_granularity(run: _Run, region: Region, p: _Params) -> int:
    """``cxl_region_determine_granularity()``: a granularity or -errno."""
    func = "cxl_region_determine_granularity"
    rd = p.root_decoder
    assert rd is not None
    gran = rd.interleave_granularity
    if gran in (0, U32_MAX):
        run.err(func, f"{region.devname}: unable to determine root decoder granularity")
        return -errno.ENXIO
    if not p.granularity:
        return gran
    ways = rd.interleave_ways
    if ways in (0, U32_MAX):
        run.err(func, f"{region.devname}: unable to determine root decoder ways")
        return -errno.ENXIO
    if ways == 1:
        return p.granularity
    if p.granularity == gran:
        return gran
    run.err(func, f"{region.devname}: For an x{ways} root, only root decoder granularity "
                  f"({gran}) permitted")
    return -errno.EINVAL


class _Failed(Exception):
    def __init__(self, rc: int):
        super().__init__(rc)
        self.rc = rc


def _try(run: _Run, devname: str, op: str, fn: Callable[[], None]) -> None:
    """region.c ``try()``: ``<dev>: <op> failed: <strerror>``."""
    try:
        fn()
    except OSError as e:
        code = e.errno or errno.EIO
        run.err("create_region", f"{devname}: {op} failed: {strerror(code)}")
        raise _Failed(-code) from None


def _create_region(run: _Run, p: _Params) -> tuple[int, int]:
    """``create_region()``: returns (rc, count)."""
    rc = _validate_config(run, p)
    if rc:
        return rc, 0
    rd = p.root_decoder
    assert rd is not None
    func = "create_region"
    default_size = True
    if p.size:
        size = p.size
        default_size = False
    elif p.ep_min_size:
        size = to_u64(p.ep_min_size * p.ways)
    else:
        run.err(func, "unable to determine region size")
        return -errno.ENXIO, 0
    max_extent = rd.max_available_extent
    if max_extent == ULLONG_MAX:
        run.err(func, f"{rd.devname}: unable to determine max extent")
        return -errno.EINVAL, 0
    if not default_size and size > max_extent:
        run.err(func, f"{rd.devname}: region size {hex_text(size)} exceeds max available space "
                      f"({hex_text(max_extent)})")
        return -errno.ENOSPC, 0
    if size > max_extent:
        size = align_down(max_extent, SZ_256M * p.ways)

    if p.mode == DecoderMode.PMEM:
        region = rd.create_pmem_region()
    elif p.mode == DecoderMode.RAM:
        region = rd.create_ram_region()
    else:
        run.err(func, f"region type '{p.opts.get('type')}' is not supported")
        return -errno.EOPNOTSUPP, 0
    if region is None:
        run.err(func, f"failed to create region under {p.opts['root_decoder']}")
        return -errno.ENXIO, 0
    devname = region.devname

    rc = 0
    try:
        gran = _determine_granularity(run, region, p)
        if gran < 0:
            raise _Failed(gran)
        _try(run, devname, "set_interleave_granularity", lambda: region.set_interleave_granularity(gran))
        _try(run, devname, "set_interleave_ways", lambda: region.set_interleave_ways(p.ways))
        if p.mode == DecoderMode.PMEM:
            u = p.uuid if p.uuid is not None else uuidlib.uuid4().bytes
            _try(run, devname, "set_uuid", lambda: region.set_uuid(u))
        _try(run, devname, "set_size", lambda: region.set_size(size))
        for i in range(p.ways):
            md = p.memdevs[i]
            ep_dec = _find_free_decoder(run, md)
            if ep_dec is None:
                raise _Failed(-errno.ENXIO)
            if ep_dec.get_mode() != p.mode:
                _try(run, ep_dec.devname, "set_dpa_size", lambda: ep_dec.set_dpa_size(0))
                _try(run, ep_dec.devname, "set_mode", lambda: ep_dec.set_mode(p.mode))
            _try(run, ep_dec.devname, "set_dpa_size", lambda: ep_dec.set_dpa_size(size // p.ways))
            try:
                region.set_target(i, ep_dec)
            except OSError as e:
                run.err(func, f"{devname}: failed to set target{i} to {md.devname}")
                raise _Failed(-(e.errno or errno.EIO)) from None
        try:
            region.decode_commit()
        except OSError as e:
            code = e.errno or errno.EIO
            run.err(func, f"{devname}: failed to commit decode: {strerror(code)}")
            raise _Failed(-code) from None
        try:
            region.enable()
        except OSError as e:
            code = e.errno or errno.EIO
            run.err(func, f"{devname}: failed to enable: {strerror(code)}")
            raise _Failed(-code) from None
    except _Failed as f:
        rc = f.rc
    if rc:
        try:
            region.delete()
        except OSError:
            pass
        return rc, 0
    flags = UTIL_JSON_TARGETS | (UTIL_JSON_HUMAN if run.ctx.isatty else 0)
    jregion = cj.region_to_json(region, flags, run.ctx.stderr)
    run.ctx.stdout.write(dumps(jregion, JSON_C_TO_STRING_PRETTY) + "\n")
    return 0, 1


def cmd_create_region(argv: list[str], ctx: CommandContext) -> int:
    """``cxl create-region <target0> ... [<options>]``."""
    run, p = _start("create", argv, ctx, CREATE_OPTIONS)
    rc = _parse_create_options(run, p)
    count = 0
    if rc == 0:
        rc, count = _create_region(run, p)
    run.rl.info("cmd_create_region", f"created {count} region{'' if count == 1 else 's'}")
    return 0 if rc == 0 else 1


# ---------------------------------------------------------------------------
# enable / disable / destroy
# ---------------------------------------------------------------------------

def _disable_region(run: _Run, region: Region, force: bool) -> int:
    """region.c ``disable_region()``: offline kmem memory first (v79+)."""
    devname = region.devname
    failed = 0
    dax = region.dax_region
    if dax is not None:
        for dev in dax.devices():
            if not dev.is_system_ram_capable():
                continue
            mem = dev.memory()
            if mem is None:
                return -errno.ENXIO
            if mem.is_online():
                rc = mem.offline()
                if rc < 0:
                    run.err("disable_region", f"{devname}: unable to offline {dev.devname}: {strerror(abs(rc))}")
                    if not force:
                        return rc
                    failed += 1
    if failed:
        run.err("disable_region", f"{devname}: Forcing region disable without successful offline.")
        run.err("disable_region", f"{devname}: Physical address space has now been permanently leaked.")
        run.err("disable_region", f"{devname}: Leaked address cannot be recovered until a reboot.")
    try:
        region.disable()
    except OSError as e:
        return -(e.errno or errno.EIO)
    return 0


def _destroy_region(run: _Run, region: Region, force: bool) -> int:
    """region.c ``destroy_region()``."""
    func = "destroy_region"
    devname = region.devname
    if region.is_enabled():
        if force:
            rc = _disable_region(run, region, force)
            if rc:
                run.err(func, f"{devname}: error disabling region: {strerror(-rc)}")
                return rc
        else:
            run.err(func, f"{devname} active. Disable it or use --force")
            return -errno.EBUSY
    try:
        region.decode_reset()
    except OSError as e:
        code = e.errno or errno.EIO
        run.err(func, f"{devname}: failed to reset decode: {strerror(code)}")
        return -code
    ways = region.interleave_ways
    if ways in (0, U32_MAX):
        run.err(func, f"{devname}: error getting interleave ways")
        return -errno.ENXIO
    for i in range(ways):
        ep_dec = region.get_target_decoder(i)
        if ep_dec is None:
            return -errno.ENXIO
        try:
            region.clear_target(i)
        except OSError as e:
            code = e.errno or errno.EIO
            run.err(func, f"{devname}: clearing target{i} failed: {strerror(code)}")
            return -code
        try:
            ep_dec.set_dpa_size(0)
        except OSError as e:
            code = e.errno or errno.EIO
            run.err(func, f"{ep_dec.devname}: set_dpa_size failed: {strerror(code)}")
            return -code
    try:
        region.delete()
    except OSError as e:
        return -(e.errno or errno.EIO)
    return 0


def _xable(run: _Run, p: _Params, region: Region, action: str) -> int:
    force = bool(p.opts.get("force"))
    if action == "enable":
        try:
            region.enable()
        except OSError as e:
            return -(e.errno or errno.EIO)
        return 0
    if action == "disable":
        return _disable_region(run, region, force)
    if action == "destroy":
        return _destroy_region(run, region, force)
    return -errno.EINVAL


def _region_action(run: _Run, p: _Params, action: str) -> tuple[int, int]:
    """``region_action()`` for enable/disable/destroy: (rc, count)."""
    o = p.opts
    rc = err_rc = 0
    count = 0
    for bus in run.lib.buses():
        if not bus_filter(bus, o.get("bus")):
            continue
        if not bus.is_root():
            continue
        for dec in bus.decoders():
            if not decoder_filter(dec, o.get("root_decoder")):
                continue
            # decoder_region_action()
            drc = dec_err = 0
            for region in list(dec.regions()):
                if not any(region_filter(region, a) for a in p.args):
                    continue
                drc = _xable(run, p, region, action)
                if drc == 0:
                    count += 1
                else:
                    run.err("decoder_region_action", f"{region.devname}: failed: {strerror(-drc)}")
                    dec_err = drc
            rc = dec_err if dec_err else drc
            if rc:
                err_rc = rc
    if err_rc:
        run.err("region_action", f"one or more failures, last failure: {strerror(-err_rc)}")
        return err_rc, count
    return rc, count


def _cmd_xable(action: str, options: list, past: str, func: str,
               argv: list[str], ctx: CommandContext) -> int:
    run, p = _start(action, argv, ctx, options)
    rc, count = _region_action(run, p, action)
    run.rl.info(func, f"{past} {count} region{'' if count == 1 else 's'}")
    return 0 if rc == 0 else 1


def cmd_enable_region(argv: list[str], ctx: CommandContext) -> int:
    """``cxl enable-region <region0> ... [<options>]``."""
    return _cmd_xable("enable", ENABLE_OPTIONS, "enabled", "cmd_enable_region", argv, ctx)


def cmd_disable_region(argv: list[str], ctx: CommandContext) -> int:
    """``cxl disable-region <region0> ... [<options>]``."""
    return _cmd_xable("disable", DISABLE_OPTIONS, "disabled", "cmd_disable_region", argv, ctx)


def cmd_destroy_region(argv: list[str], ctx: CommandContext) -> int:
    """``cxl destroy-region <region0> ... [<options>]``."""
    return _cmd_xable("destroy", DESTROY_OPTIONS, "destroyed", "cmd_destroy_region", argv, ctx)
