"""``cxl inject-media-poison`` / ``cxl clear-media-poison`` (added in ndctl
v83/v84; documented in Documentation/cxl/cxl-{inject,clear}-media-poison.txt,
the sources are not in cxlemu's reference set, so only the documented
behaviour is reproduced and the error texts are cxlemu's own).

``cxl inject-media-poison <memdev> -a <address> [--debug]`` writes the
address (``0x%llx``) to ``/sys/kernel/debug/cxl/<memdev>/inject_poison`` and
prints ``poison inject at mem0:0x1000``; ``clear-media-poison`` writes
``clear_poison`` and prints ``poison cleared at mem0:0x1000``.  The memdev is
named as everywhere in cxl (``mem0``, ``0``, the host device).  The kernel
checks the address (64-byte aligned, inside the device: -EINVAL); a device
without the capability has no debugfs file.
"""

from __future__ import annotations

import errno

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.log import Log
from cxlemu.tools.common.parse_options import OPT_BOOLEAN, OPT_END, OPT_STRING, error_text, parse_options, strtoull, \
    usage_with_options
from cxlemu.tools.libcxl import CxlContext
from cxlemu.tools.libcxl.cnum import U64_MAX
from cxlemu.tools.libcxl.sysfs import strerror

from .filter import memdev_filter

__all__ = ["cmd_inject_media_poison", "cmd_clear_media_poison", "DEBUGFS"]

DEBUGFS = "/sys/kernel/debug"


def _options(verb: str) -> list:
    return [
        OPT_STRING("a", "address", "address", f"Address for poison {verb}",
                   f"Device physical address for poison {verb} in hex or decimal"),
        OPT_BOOLEAN(None, "debug", "debug", "turn on debug output"),
        OPT_END(),
    ]


def _run(argv: list[str], ctx: CommandContext, inject: bool) -> int:
    cmd = "inject-media-poison" if inject else "clear-media-poison"
    verb = "injection" if inject else "clearing"
    usage = [f"cxl {cmd} <memdev> [<options>]"]
    opts = _options(verb)
    parsed = parse_options(argv, opts, usage, stderr=ctx.stderr)
    o, args = parsed.values, list(parsed.args)
    if len(args) != 1:
        usage_with_options(usage, opts, error_text("exactly one memdev is required\n") if len(args) > 1 else "")
    ml = Log.init("cxl memdev", "CXL_MEMDEV_LOG", ctx.env, stream=ctx.stderr)
    text = o.get("address")
    if not text:
        usage_with_options(usage, opts, error_text("a device physical address is required (-a/--address)\n"))
    addr, end = strtoull(text, 0)
    if end != len(text) or addr == U64_MAX:
        ctx.stderr.write(error_text(f"invalid address '{text}'\n"))
        return -errno.EINVAL & 0xFF
    lib = CxlContext(ctx.backend, ctx.env, ctx.stderr)
    md = next((m for m in lib.memdevs() if memdev_filter(m, args[0], None)), None)
    if md is None:
        ml.err(cmd.replace("-", "_"), f"no memdev matches {args[0]}")
        return errno.ENODEV
    name = md.devname
    path = f"{DEBUGFS}/cxl/{name}/{'inject_poison' if inject else 'clear_poison'}"
    if not ctx.backend.exists(path):
        ml.err(cmd.replace("-", "_"), f"{name}: poison {verb} not supported ({path} not found)")
        return errno.EOPNOTSUPP
    try:
        ctx.backend.write(path, f"{addr:#x}\n")
    except OSError as e:
        ml.err(cmd.replace("-", "_"), f"{name}: poison {verb} at {addr:#x} failed: {strerror(e.errno or errno.EIO)}")
        return e.errno or errno.EIO
    ctx.stdout.write(f"poison {'inject' if inject else 'cleared'} at {name}:{addr:#x}\n")
    return 0


def cmd_inject_media_poison(argv: list[str], ctx: CommandContext) -> int:
    return _run(argv, ctx, inject=True)


def cmd_clear_media_poison(argv: list[str], ctx: CommandContext) -> int:
    return _run(argv, ctx, inject=False)
