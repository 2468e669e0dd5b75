"""Shared pieces of the ndctl commands: the library context and logging."""

from __future__ import annotations

import os

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.log import LOG_DEBUG, Log
from cxlemu.tools.libndctl import NdctlCtx


def make_ctx(ctx: CommandContext, debug: bool = False) -> NdctlCtx:
    """ndctl_new(): log owner "libndctl", priority from NDCTL_LOG; its
    libdaxctl context logs as "libdaxctl" (DAXCTL_LOG).  ``debug`` is
    ndctl_set_log_priority(LOG_DEBUG), which libndctl forwards to libdaxctl."""
    log = Log.init("libndctl", "NDCTL_LOG", ctx.env, stream=ctx.stderr)
    dax_log = Log.init("libdaxctl", "DAXCTL_LOG", ctx.env, stream=ctx.stderr)
    if debug:
        log.priority = dax_log.priority = LOG_DEBUG
    return NdctlCtx(ctx.backend, log, dax_log)


def strerror(rc: int) -> str:
    return os.strerror(abs(rc)) if rc else "Success"
