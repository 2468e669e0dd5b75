"""A small dd (if=, of=, bs=, ibs=, obs=, count=, skip=, seek=, conv=notrunc,
status=none|noxfer|progress), run inside a machine: ``/dev/mem`` addresses host
physical memory, ``/dev/daxX.Y`` a device-DAX instance; other paths are host
files.  Messages and exit codes follow GNU coreutils dd."""

from __future__ import annotations

import errno
import os
import time

from cxlemu.tools.common.command import CommandContext

_MULT = {"c": 1, "w": 2, "b": 512, "kB": 1000, "K": 1024, "MB": 1000**2, "M": 1024**2, "xM": 1024**2,
         "GB": 1000**3, "G": 1024**3, "T": 1024**4, "TB": 1000**4, "KiB": 1024, "MiB": 1024**2,
         "GiB": 1024**3, "k": 1024}


class DdUsage(Exception):
    pass


def parse_number(s: str) -> int:
    total = 1
    for part in s.split("x"):
        i = 0
        while i < len(part) and part[i].isdigit():
            i += 1
        if i == 0:
            raise DdUsage(f"invalid number: '{s}'")
        n, suf = int(part[:i]), part[i:]
        if suf and suf not in _MULT:
            raise DdUsage(f"invalid number: '{s}'")
        total *= n * _MULT.get(suf, 1)
    return total


def _human(n: float, base: int, units: list[str]) -> str:
    v, u = float(n), units[0]
    for unit in units[1:]:
        if v < base:
            break
        v /= base
        u = unit
    if v < 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.0f}"
    return f"{s} {u}"


def _summary(full_in, part_in, full_out, part_out, nbytes, secs) -> str:
    out = f"{full_in}+{part_in} records in\n{full_out}+{part_out} records out\n"
    rate = nbytes / secs if secs > 0 else float("inf")
    rate_s = _human(rate, 1000, ["B", "kB", "MB", "GB", "TB"]) + "/s" if secs > 0 else "Infinity B/s"
    if nbytes < 1000:
        size = f"{nbytes} byte{'s' if nbytes != 1 else ''}"
    else:
        size = (f"{nbytes} bytes ({_human(nbytes, 1000, ['B', 'kB', 'MB', 'GB', 'TB'])}, "
                f"{_human(nbytes, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB'])})")
    return out + f"{size} copied, {secs:.6g} s, {rate_s}\n"


def dd(argv: list[str], ctx: CommandContext) -> int:
    opts = {"bs": None, "ibs": "512", "obs": "512", "count": None, "skip": "0", "seek": "0",
            "if": None, "of": None, "conv": "", "status": "", "iflag": "", "oflag": ""}
    try:
        for a in argv:
            if "=" not in a:
                raise DdUsage(f"unrecognized operand '{a}'")
            k, v = a.split("=", 1)
            if k not in opts:
                raise DdUsage(f"unrecognized operand '{a}'")
            opts[k] = v
        ibs = parse_number(opts["bs"] or opts["ibs"])
        obs = parse_number(opts["bs"] or opts["obs"])
        count = parse_number(opts["count"]) if opts["count"] is not None else None
        skip = parse_number(opts["skip"])
        seek = parse_number(opts["seek"])
        conv = set(filter(None, opts["conv"].split(",")))
        for c in conv:
            if c not in ("notrunc", "fsync", "fdatasync", "sync", "noerror"):
                raise DdUsage(f"invalid conversion: '{c}'")
    except DdUsage as e:
        ctx.stderr.write(f"dd: {e}\nTry 'dd --help' for more information.\n")
        return 1
    if opts["if"] is None or opts["of"] is None:
        ctx.stderr.write("dd: cxlemu's dd needs if= and of= (no terminal streams)\n")
        return 1
    b = ctx.backend
    try:
        src = b.open_data(opts["if"], write=False)
    except OSError as e:
        ctx.stderr.write(f"dd: failed to open '{opts['if']}': {os.strerror(e.errno)}\n")
        return 1
    try:
        dst = b.open_data(opts["of"], write=True)
    except OSError as e:
        ctx.stderr.write(f"dd: failed to open '{opts['of']}': {os.strerror(e.errno)}\n")
        return 1
    if "notrunc" not in conv and getattr(dst, "is_regular", False):
        dst.truncate(seek * obs)
    t0 = time.monotonic()
    full_in = part_in = full_out = part_out = total = 0
    rpos, wpos = skip * ibs, seek * obs
    rc = 0
    n = 0
    try:
        while count is None or n < count:
            try:
                chunk = src.pread(ibs, rpos)
            except OSError as e:
                ctx.stderr.write(f"dd: error reading '{opts['if']}': {os.strerror(e.errno)}\n")
                rc = 1
                break
            if not chunk:
                break
            n += 1
            rpos += len(chunk)
            if len(chunk) == ibs:
                full_in += 1
            else:
                part_in += 1
            try:
                dst.pwrite(chunk, wpos)
            except OSError as e:
                msg = os.strerror(e.errno) if e.errno else str(e)
                ctx.stderr.write(f"dd: error writing '{opts['of']}': {msg}\n")
                rc = 1
                break
            wpos += len(chunk)
            total += len(chunk)
            if len(chunk) == obs:
                full_out += 1
            else:
                part_out += 1
            if len(chunk) < ibs and getattr(src, "size", None) is not None:
                break
    finally:
        src.close()
        dst.close()
    if opts["status"] != "none":
        ctx.stderr.write(_summary(full_in, part_in, full_out, part_out, total, time.monotonic() - t0))
    return rc


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    if argv and argv[0] in ("--help", "--version"):
        ctx.stdout.write("dd (cxlemu) operands: if= of= bs= ibs= obs= count= skip= seek= conv=notrunc status=none\n")
        return 0
    return dd(argv, ctx)
