"""Memdev commands of cxl/memdev.c (ndctl v81) other than the label
commands (those live in :mod:`.labels`): ``disable-memdev``,
``enable-memdev``, ``reserve-dpa``, ``free-dpa``, ``set-partition``,
``set-alert-config`` and ``wait-sanitize``.

``memdev_action()`` rules reproduced:

* arguments are ``memN``, ``N`` (C ``sscanf("mem%lu")``/``sscanf("%lu")``),
  host names only through the later filter, or ``all``; with ``-S`` serial
  numbers (``strtoull(.., 0)`` consuming the whole word).  An invalid one
  logs ``'%s' is not a valid memdev name|serial number``; when every
  argument is invalid (or there is none) the usage is printed (exit 129).
  ``all`` truncates the argument list to its *first* element (C sets
  ``argc = 1`` without moving ``all`` to the front);
* each argument is matched against every memdev (``-b`` filters by bus);
  no match is ``no memdev matches %s`` (info);
* the result is the number of memdevs acted on, or the first error when
  none succeeded; the summary line is always printed (INFO), with a plural
  only when the count is above 1 (``disabled 0 mem``), and the exit status
  is 1 only when nothing succeeded and something failed;
* reserve-dpa / free-dpa / set-partition / set-alert-config print a JSON
  array of memdevs (``util_display_json_array``; a bare object with ``-u``
  semantics when stdout is a TTY and there is exactly one).
"""

from __future__ import annotations

import errno
from typing import Any, Callable

from cxlemu.hw.mailbox.opcodes import CxlMemCommandId
from cxlemu.hw.mailbox.payloads import SetAlertConfig, SetPartitionInfo
from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.jsonc import display_json
from cxlemu.tools.common.log import Log
from cxlemu.tools.common.parse_options import (OPT_BOOLEAN, OPT_END, OPT_INTEGER, OPT_STRING, parse_options,
                                               strtol, strtoull, usage_with_options)
from cxlemu.tools.common.util_json import (UTIL_JSON_ALERT_CONFIG, UTIL_JSON_HUMAN, UTIL_JSON_PARTITION,
                                           parse_size64)
from cxlemu.tools.libcxl import CommandError, CxlContext, Decoder, DecoderMode, Memdev, mode_from_ident
from cxlemu.tools.libcxl.cnum import U64_MAX, sscanf_int, to_s32, to_u64
from cxlemu.tools.libcxl.sysfs import strerror
from cxlemu.util.lazydc import dataclass

from . import json as cj
from .action import finish, memdev_base_options, rc_of, set_debug
from .filter import decoder_filter, memdev_filter, memdev_filter_by_bus

__all__ = ["cmd_disable_memdev", "cmd_enable_memdev", "cmd_reserve_dpa", "cmd_free_dpa",
           "cmd_set_partition", "cmd_set_alert_config", "cmd_wait_sanitize",
           "partition_align", "param_size_to_volatile_size", "MEMDEV_OPTIONS"]

ULLONG_MAX = U64_MAX
CXL_CAPACITY_MULTIPLIER = 256 << 20
SHRT_MIN, SHRT_MAX, USHRT_MAX = -(1 << 15), (1 << 15) - 1, (1 << 16) - 1


def _s64(v: int) -> int:
    """C ``%lld`` of an unsigned long long."""
    v = to_u64(v)
    return v - (1 << 64) if v >> 63 else v


# ---------------------------------------------------------------------------
# option tables (memdev.c)
# ---------------------------------------------------------------------------

def _dpa() -> list:
    return [OPT_STRING("d", "decoder", "decoder_filter", "decoder instance id",
                       "override the automatic decoder selection"),
            OPT_STRING("t", "type", "type", "type", "'pmem' or 'ram' (volatile) (Default: 'pmem')"),
            OPT_BOOLEAN("f", "force", "force", "Attempt 'expected to fail' operations")]


def _alert() -> list:
    out = []
    for short, name, dest, what in (
            ("L", "life-used", "life_used", "life used"),
            ("O", "over-temperature", "dev_over_temperature", "device over temperature"),
            ("U", "under-temperature", "dev_under_temperature", "device under temperature"),
            ("V", "volatile-mem-err", "corrected_volatile_mem_err", "corrected volatile mem error"),
            ("P", "pmem-err", "corrected_pmem_err", "corrected pmem error")):
        out.append(OPT_STRING(short, f"{name}-threshold", f"{dest}_threshold", "threshold",
                              f"threshold value for {what} warning alert"))
        out.append(OPT_STRING(None, f"{name}-alert", f"{dest}_alert", "'on' or 'off'",
                              f"enable or disable {what} warning alert"))
    return out


MEMDEV_OPTIONS: dict[str, list] = {
    "disable": memdev_base_options() + [OPT_BOOLEAN("f", "force", "force",
                                                    "DANGEROUS: override active memdev safety checks"),
                                        OPT_END()],
    "enable": memdev_base_options() + [OPT_END()],
    "set-partition": memdev_base_options() + [
        OPT_STRING("t", "type", "type", "type", "'pmem' or 'ram' (volatile) (Default: 'pmem')"),
        OPT_STRING("s", "size", "size", "size", "size in bytes (Default: all available capacity)"),
        OPT_BOOLEAN("a", "align", "align", "auto-align --size per device's requirement"),
        OPT_END()],
    "reserve-dpa": memdev_base_options() + [
        OPT_STRING("s", "size", "size", "size", "size in bytes (Default: all available capacity)")] + _dpa() + [
        OPT_END()],
    "free-dpa": memdev_base_options() + _dpa() + [OPT_END()],
    "set-alert-config": memdev_base_options() + _alert() + [OPT_END()],
    "wait-sanitize": memdev_base_options() + [
        OPT_INTEGER("t", "timeout", "timeout", "time in milliseconds to wait for overwrite completion "
                    "(default: infinite)"), OPT_END()],
}

_USAGE = {
    "disable": "cxl disable-memdev <mem0> [<mem1>..<memN>] [<options>]",
    "enable": "cxl enable-memdev <mem0> [<mem1>..<memN>] [<options>]",
    "set-partition": "cxl set-partition <mem0> [<mem1>..<memN>] [<options>]",
    "reserve-dpa": "cxl reserve-dpa <mem0> [<mem1>..<memn>] [<options>]",
    "free-dpa": "cxl free-dpa <mem0> [<mem1>..<memn>] [<options>]",
    "set-alert-config": "cxl set-alert-config <mem0> [<mem1>..<memN>] [<options>]",
    "wait-sanitize": "cxl wait-sanitize <mem0> [<mem1>..<memn>] [<options>]",
}
_JSON_ACTIONS = frozenset({"set-partition", "reserve-dpa", "free-dpa", "set-alert-config"})


# ---------------------------------------------------------------------------
# memdev_action()
# ---------------------------------------------------------------------------

@dataclass
class _Actx:
    """``struct action_context`` plus what every action needs."""

    ctx: CommandContext
    lib: CxlContext
    ml: Log
    opts: dict[str, Any]
    jdevs: list | None = None

    @property
    def human_flags(self) -> int:
        return UTIL_JSON_HUMAN if self.ctx.isatty else 0


Action = Callable[[Memdev, _Actx], int]


def _valid_arg(arg: str, serial: bool) -> bool:
    if serial:
        _, end = strtoull(arg, 0)
        return end == len(arg)
    return sscanf_int(arg, "mem") is not None or sscanf_int(arg) is not None


def _memdev_action(kind: str, argv: list[str], ctx: CommandContext, action: Action) -> tuple[int, Log]:
    ml = Log.init("cxl memdev", "CXL_MEMDEV_LOG", ctx.env, stream=ctx.stderr)
    lib = CxlContext(ctx.backend, ctx.env, ctx.stderr)
    options, usage = MEMDEV_OPTIONS[kind], [_USAGE[kind]]
    parsed = parse_options(argv, options, usage, values={"timeout": -1}, stderr=ctx.stderr)
    o = parsed.values
    args = list(parsed.args)
    if not args:
        usage_with_options(usage, options)
    serial = bool(o.get("serial"))
    err = 0
    for i, a in enumerate(args):
        if not serial and a == "all":
            args = args[:1]
            break
        if _valid_arg(a, serial):
            continue
        ml.err("memdev_action", f"'{a}' is not a valid memdev {'serial number' if serial else 'name'}")
        err += 1
    actx = _Actx(ctx, lib, ml, o, [] if kind in _JSON_ACTIONS else None)
    if err == len(args):
        usage_with_options(usage, options)
    set_debug(lib, ml, bool(o.get("verbose")))

    count = err = 0
    for a in args:
        found = False
        for md in lib.memdevs():
            ident, ser = (None, a) if serial else (a, None)
            if not memdev_filter(md, ident, ser):
                continue
            if not memdev_filter_by_bus(md, o.get("bus")):
                continue
            found = True
            rc = action(md, actx)
            if rc == 0:
                count += 1
            elif not err:
                err = rc
        if not found:
            ml.info("memdev_action", f"no memdev matches {a}")
    if actx.jdevs is not None:
        out, warn = display_json(actx.jdevs, actx.human_flags)
        ctx.stderr.write(warn)
        ctx.stdout.write(out)
    return (count if count > 0 else err), ml


# ---------------------------------------------------------------------------
# enable / disable
# ---------------------------------------------------------------------------

def _action_disable(md: Memdev, actx: _Actx) -> int:
    if not md.is_enabled():
        return 0
    ep = md.endpoint
    if ep is None:
        return -errno.ENODEV
    if ep.decoders_committed:
        actx.ml.err("action_disable", f"{md.devname} is part of an active region")
        if not actx.opts.get("force"):
            return -errno.EBUSY
        actx.ml.err("action_disable", f"Forcing {md.devname} disable with an active region!")
    return rc_of(md.disable_invalidate)


def _action_enable(md: Memdev, actx: _Actx) -> int:
    return rc_of(md.enable)


def cmd_disable_memdev(argv: list[str], ctx: CommandContext) -> int:
    """``cxl disable-memdev <mem0> [<mem1>..<memN>] [<options>]``."""
    count, ml = _memdev_action("disable", argv, ctx, _action_disable)
    return finish(count, ml, "cmd_disable_memdev", lambda n, s: f"disabled {n} mem{s}")


def cmd_enable_memdev(argv: list[str], ctx: CommandContext) -> int:
    """``cxl enable-memdev <mem0> [<mem1>..<memN>] [<options>]``."""
    count, ml = _memdev_action("enable", argv, ctx, _action_enable)
    return finish(count, ml, "cmd_enable_memdev", lambda n, s: f"enabled {n} mem{s}")


# ---------------------------------------------------------------------------
# reserve-dpa / free-dpa (__reserve_dpa)
# ---------------------------------------------------------------------------

def _reserve_dpa(md: Memdev, actx: _Actx, alloc: bool) -> int:
    func = "__reserve_dpa"
    ml, o = actx.ml, actx.opts
    ep = md.endpoint
    devname = md.devname
    if o.get("type") is not None:
        mode = mode_from_ident(o["type"])
        if mode == DecoderMode.NONE:
            ml.err(func, f"{devname}: unsupported type: {o['type']}")
            return -errno.EINVAL
    else:
        mode = DecoderMode.RAM
    if ep is None:
        ml.err(func, f"{devname}: CXL operation disabled")
        return -errno.ENXIO
    decoders = ep.decoders()
    avail = md.ram_size if mode == DecoderMode.RAM else md.pmem_size
    for dec in decoders:
        size = dec.get_dpa_size()
        if size == ULLONG_MAX:
            continue
        if dec.get_mode() != mode:
            continue
        if size > avail:
            ml.err(func, f"{devname}: capacity accounting error")
            return -errno.ENXIO
        avail -= size

    if o.get("size") is None:
        if alloc:
            size = avail
            if not avail:
                ml.err(func, f"{devname}: no available capacity")
                return -errno.ENOSPC
        else:
            size = 0
    else:
        size = parse_size64(o["size"])
        if size == ULLONG_MAX:
            ml.err(func, f"{devname}: failed to parse size option '{o['size']}'")
            return -errno.EINVAL
        if size > avail:
            ml.err(func, f"{devname}: '{o['size']}' exceeds available capacity")
            if not o.get("force"):
                return -errno.ENOSPC

    auto: Decoder | None = None
    if alloc:
        for dec in decoders:
            if dec.get_dpa_size() == 0:
                auto = dec
                break
    else:
        for dec in reversed(decoders):
            dsize = dec.get_dpa_size()
            if not dsize:
                continue
            if dec.size:
                break
            if dsize < ULLONG_MAX:
                auto = dec
                break

    target: Decoder | None = None
    filt = o.get("decoder_filter")
    if filt is not None:
        val, end = strtoull(filt, 0)
        if end == len(filt):
            buf = f"decoder{ep.id}.{_s64(val)}"
        else:
            buf = filt
        if len(buf.encode()) >= 256:
            ml.err(func, f"{devname}: decoder filter '{filt}' too long")
            return -errno.EINVAL
        for dec in (decoders if alloc else list(reversed(decoders))):
            if decoder_filter(dec, buf):
                target = dec
                break
        if target is None:
            ml.err(func, f"{devname}: no match for decoder: '{filt}'")
            return -errno.ENXIO
        if target is not auto:
            ml.err(func, f"{devname}: {target.devname} is out of sequence")
            if not o.get("force"):
                return -errno.EINVAL
    if target is None:
        target = auto
    if target is None:
        ml.err(func, f"{devname}: no suitable decoder found")
        return -errno.ENXIO

    if target.get_mode() != mode:
        try:
            target.set_dpa_size(0)
        except OSError as e:
            ml.err(func, f"{devname}: {target.devname}: failed to clear allocation to set mode")
            return -(e.errno or errno.EIO)
        try:
            target.set_mode(mode)
        except OSError as e:
            ml.err(func, f"{devname}: {target.devname}: failed to set "
                         f"{'pmem' if mode == DecoderMode.PMEM else 'ram'} mode")
            return -(e.errno or errno.EIO)
    try:
        target.set_dpa_size(size)
    except OSError as e:
        ml.err(func, f"{devname}: {target.devname}: failed to set dpa allocation")
        return -(e.errno or errno.EIO)
    flags = actx.human_flags
    jdev = cj.memdev_to_json(md, flags, actx.ctx.stderr)
    jdev["decoder"] = cj.decoder_to_json(target, flags)
    assert actx.jdevs is not None
    actx.jdevs.append(jdev)
    return 0


def cmd_reserve_dpa(argv: list[str], ctx: CommandContext) -> int:
    """``cxl reserve-dpa <mem0> [<mem1>..<memn>] [<options>]``."""
    count, ml = _memdev_action("reserve-dpa", argv, ctx, lambda md, a: _reserve_dpa(md, a, True))
    return finish(count, ml, "cmd_reserve_dpa",
                  lambda n, s: f"reservation completed on {n} mem device{s}")


def cmd_free_dpa(argv: list[str], ctx: CommandContext) -> int:
    """``cxl free-dpa <mem0> [<mem1>..<memn>] [<options>]``."""
    count, ml = _memdev_action("free-dpa", argv, ctx, lambda md, a: _reserve_dpa(md, a, False))
    return finish(count, ml, "cmd_free_dpa",
                  lambda n, s: f"reservation release completed on {n} mem device{s}")


# ---------------------------------------------------------------------------
# set-partition
# ---------------------------------------------------------------------------

SETPART_PMEM, SETPART_VOLATILE = 0, 1


def partition_align(volatile_size: int, alignment: int, available: int, ptype: int,
                    auto_align: bool) -> tuple[int, str | None]:
    """memdev.c ``partition_align()`` (bit-mask ALIGN / ALIGN_DOWN / IS_ALIGNED
    of util/size.h): ``(volatile_size, error)``; ULLONG_MAX on error."""
    mask = alignment - 1
    if volatile_size & mask == 0:
        return volatile_size, None
    if not auto_align:
        return ULLONG_MAX, f"size {_s64(volatile_size)} is not partition aligned {_s64(alignment)}"
    if ptype == SETPART_PMEM:
        v = to_u64((to_u64(volatile_size + alignment) & to_u64(~mask)) - alignment)
    else:
        v = to_u64(volatile_size + mask) & to_u64(~mask)
    if v > available:
        return ULLONG_MAX, (f"aligned partition size {_s64(v)} exceeds available size "
                            f"{_s64(available)}")
    return v, None


def param_size_to_volatile_size(ptype: int, size: int, available: int) -> tuple[int, str | None]:
    """memdev.c ``param_size_to_volatile_size()``; ``size`` ULLONG_MAX means
    "no --size"."""
    if size == ULLONG_MAX:
        return (0 if ptype == SETPART_PMEM else available), None
    if size > available:
        return ULLONG_MAX, f"{_s64(size)} exceeds available capacity {_s64(available)}"
    return (to_u64(available - size) if ptype == SETPART_PMEM else size), None


def _validate_partition(md: Memdev, actx: _Actx, ptype: int, size: int) -> int:
    func = "validate_partition"
    ident = md.mailbox.identify()
    if ident is None:
        return ULLONG_MAX
    alignment = ident.partition_align
    if alignment == 0:
        actx.ml.err(func, f"{md.devname}: no available capacity")
        return ULLONG_MAX
    available = to_u64(ident.total_capacity - ident.volatile_only_capacity - ident.persistent_only_capacity)
    v, msg = param_size_to_volatile_size(ptype, size, available)
    if msg is not None:
        actx.ml.err("param_size_to_volatile_size", f"{md.devname}: {msg}")
        return ULLONG_MAX
    v, msg = partition_align(v, alignment, available, ptype, bool(actx.opts.get("align")))
    if msg is not None:
        actx.ml.err("partition_align", f"{md.devname}: {msg}")
    return v


def _mbox_result(md: Memdev, actx: _Actx, func: str, send: Callable[[], None]) -> int:
    """Create/submit/status handling shared by set-partition and
    set-alert-config."""
    rc = 0
    try:
        send()
    except CommandError as e:
        if e.status:
            actx.ml.err(func, f"{func}: mbox status: {e.status}")
            rc = -errno.ENXIO
        elif e.errno == errno.EOPNOTSUPP:
            rc = -errno.ENXIO            # the command could not be created
        else:
            rc = -(e.errno or errno.EIO)
            actx.ml.err(func, f"cmd submission failed: {strerror(-rc)}")
    if rc:
        actx.ml.err(func, f"{md.devname} error: {strerror(-rc)}")
    return rc


def _send_and_list(md: Memdev, actx: _Actx, func: str, opcode: int, payload: bytes, json_flag: int) -> int:
    """Send one mailbox command (:func:`_mbox_result`), then list the memdev
    with ``json_flag``, whatever the result."""
    rc = _mbox_result(md, actx, func, lambda: md.mailbox.send(opcode, payload, 0))
    jmd = cj.memdev_to_json(md, json_flag | actx.human_flags, actx.ctx.stderr)
    assert actx.jdevs is not None
    actx.jdevs.append(jmd)
    return rc


def _action_setpartition(md: Memdev, actx: _Actx) -> int:
    func = "action_setpartition"
    o = actx.opts
    ptype = SETPART_PMEM
    if o.get("type") is not None:
        if o["type"] == "pmem":
            pass
        elif o["type"] in ("volatile", "ram"):
            ptype = SETPART_VOLATILE
        else:
            actx.ml.err(func, f"invalid type '{o['type']}'")
            return -errno.EINVAL
    size = ULLONG_MAX
    if o.get("size") is not None:
        size = parse_size64(o["size"])
        if size == ULLONG_MAX:
            actx.ml.err(func, f"{md.devname}: failed to parse size option '{o['size']}'")
            return -errno.EINVAL
    size = _validate_partition(md, actx, ptype, size)
    if size == ULLONG_MAX:
        return -errno.EINVAL
    payload = SetPartitionInfo(volatile_capacity=(size // CXL_CAPACITY_MULTIPLIER) * CXL_CAPACITY_MULTIPLIER,
                               flags=0).encode()
    return _send_and_list(md, actx, func, CxlMemCommandId.SET_PARTITION_INFO, payload, UTIL_JSON_PARTITION)


def cmd_set_partition(argv: list[str], ctx: CommandContext) -> int:
    """``cxl set-partition <mem0> [<mem1>..<memN>] [<options>]``."""
    count, ml = _memdev_action("set-partition", argv, ctx, _action_setpartition)
    return finish(count, ml, "cmd_set_partition", lambda n, s: f"set_partition {n} mem{s}")


# ---------------------------------------------------------------------------
# set-alert-config
# ---------------------------------------------------------------------------

LIFE_USED, OVER_TEMP, UNDER_TEMP, VOLATILE_ERR, PMEM_ERR = range(5)
_ALERT_FIELDS = (("life_used", LIFE_USED), ("dev_over_temperature", OVER_TEMP),
                 ("dev_under_temperature", UNDER_TEMP),
                 ("corrected_volatile_mem_err", VOLATILE_ERR), ("corrected_pmem_err", PMEM_ERR))


def _threshold_error(event: int, value: int) -> str | None:
    """memdev.c ``validate_alert_threshold()``."""
    if event == LIFE_USED:
        if value < 0 or value > 100:
            return f"Invalid life used threshold: {value}"
    elif event in (OVER_TEMP, UNDER_TEMP):
        if value < SHRT_MIN or value > SHRT_MAX:
            return f"Invalid device temperature threshold: {value}"
    elif value < 0 or value > USHRT_MAX:
        return f"Invalid corrected mem error threshold: {value}"
    return None


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def _action_set_alert_config(md: Memdev, actx: _Actx) -> int:
    func = "action_set_alert_config"
    ml, o = actx.ml, actx.opts
    valid = enable = 0
    values: dict[str, int] = {}
    for name, event in _ALERT_FIELDS:
        alert, thr = o.get(f"{name}_alert"), o.get(f"{name}_threshold")
        if alert is None:
            if thr is not None:
                ml.err(func, "Action not specified")
                return -errno.EINVAL
        elif alert == "on":
            if thr is None:
                ml.err(func, "Threshold not specified")
                return -errno.EINVAL
            val, end = strtol(thr, 10)
            if end != len(thr):
                ml.err(func, f"Invalid threshold: {thr}")
                return -errno.EINVAL
            val = to_s32(val)
            msg = _threshold_error(event, val)
            if msg is not None:
                ml.err("validate_alert_threshold", msg)
                return -errno.EINVAL
            values[name] = val
            valid |= 1 << event
            enable |= 1 << event
        elif alert == "off":
            if thr is not None:
                ml.err(func, "Disable not require threshold")
                return -errno.EINVAL
            valid |= 1 << event
            enable &= ~(1 << event)
        else:
            ml.err(func, f"Invalid action: {alert}")
            return -errno.EINVAL
    if valid == 0:
        ml.err(func, "No action specified")
        return -errno.EINVAL
    # setup_threshold_field() stores a threshold only when one was given
    payload = SetAlertConfig(
        valid_alert_actions=valid & 0xFF, enable_alert_actions=enable & 0xFF,
        life_used_prog_warn_threshold=values.get("life_used", 0) & 0xFF,
        dev_over_temperature_prog_warn_threshold=_s16(values.get("dev_over_temperature", 0)),
        dev_under_temperature_prog_warn_threshold=_s16(values.get("dev_under_temperature", 0)),
        corrected_volatile_mem_err_prog_warn_threshold=values.get("corrected_volatile_mem_err", 0) & 0xFFFF,
        corrected_pmem_err_prog_warn_threshold=values.get("corrected_pmem_err", 0) & 0xFFFF,
    ).encode()
    return _send_and_list(md, actx, func, CxlMemCommandId.SET_ALERT_CONFIG, payload, UTIL_JSON_ALERT_CONFIG)


def cmd_set_alert_config(argv: list[str], ctx: CommandContext) -> int:
    """``cxl set-alert-config <mem0> [<mem1>..<memN>] [<options>]``."""
    count, ml = _memdev_action("set-alert-config", argv, ctx, _action_set_alert_config)
    return finish(count, ml, "cmd_set_alert_config",
                  lambda n, s: f"set alert configuration for {n} mem{s}")


# ---------------------------------------------------------------------------
# wait-sanitize
# ---------------------------------------------------------------------------

def _action_wait_sanitize(md: Memdev, actx: _Actx) -> int:
    """``cxl_memdev_wait_sanitize()``.  The emulated sanitize completes
    within the write that starts it, so where libcxl would ``poll()`` for
    the sysfs notification this re-reads the state once."""
    lib = md.ctx
    path = f"{md.dev_path}/security/state"

    def read() -> str | int:
        v = lib.io.read_attr(path)
        return v if v is not None else -(lib.io.last_errno or errno.EIO)

    first = read()
    if isinstance(first, int):
        if first == -errno.ENOENT:
            return 0
        lib.log.err("cxl_memdev_wait_sanitize", f"{path}: {strerror(-first)}")
        return first
    if not first.startswith("sanitize"):
        return 0
    timeout = int(actx.opts.get("timeout", -1))
    again = read() if timeout != 0 else first
    if isinstance(again, int) or again.startswith("sanitize"):
        lib.log.dbg("cxl_memdev_wait_sanitize", f"{md.devname}: sanitize timeout")
        return -errno.ETIMEDOUT
    lib.log.dbg("cxl_memdev_wait_sanitize", f"{md.devname}: sanitize wake")
    return 0


def cmd_wait_sanitize(argv: list[str], ctx: CommandContext) -> int:
    """``cxl wait-sanitize <mem0> [<mem1>..<memn>] [<options>]``."""
    count, ml = _memdev_action("wait-sanitize", argv, ctx, _action_wait_sanitize)
    n = count if count >= 0 else 0
    ml.info("cmd_wait_sanitize", f"wait sanitize {'completed' if count >= 0 else 'failed'} on {n} "
                                 f"mem device{'s' if count > 1 else ''}")
    return 0 if count >= 0 else 1
