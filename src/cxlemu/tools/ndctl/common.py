"""Shared pieces of the ndctl commands: the library context and logging."""

from __future__ import annotations

import os

from cxlemu.tools.common.command import CommandContext
from cxlemu.tools.common.log import LOG_DEBUG, Log
from cxlemu.tools.libndctl import NdctlCtx


def make_ctx(ctx: CommandContext, debug: bool = False) -> NdctlCtx:
    """ndctl_new(): log owner "libndctl", priority from NDCTL_LOG."""
    log = Log.init("libndctl", "NDCTL_LOG", ctx.env, stream=ctx.stderr)
    if debug:
        log.priority = LOG_DEBUG
    return NdctlCtx(ctx.backend, log)


def strerror(rc: int) -> str:
    return os.strerror(abs(rc)) if rc else "Success"
