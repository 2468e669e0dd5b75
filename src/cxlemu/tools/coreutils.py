"""Tiny cat / ls / readlink / tree that read through a backend, so a machine's
/sys, /proc and /dev can be inspected with ``cxlemu exec NAME -- cat PATH``."""

from __future__ import annotations

import errno
import os
import posixpath

from cxlemu.tools.common.command import CommandContext


def _err(ctx: CommandContext, tool: str, path: str, e: OSError) -> None:
    msg = os.strerror(e.errno) if e.errno else str(e)
    ctx.stderr.write(f"{tool}: {path}: {msg}\n")


def cat(argv: list[str], ctx: CommandContext) -> int:
    rc = 0
    for path in argv:
        try:
            data = ctx.backend.read_bytes(path)
        except OSError as e:
            if e.errno == errno.EISDIR:
                ctx.stderr.write(f"cat: {path}: Is a directory\n")
            else:
                _err(ctx, "cat", path, e)
            rc = 1
            continue
        out = getattr(ctx.stdout, "buffer", None)    # binary attributes (CDAT) as bytes
        if out is not None:
            ctx.stdout.flush()
            out.write(data)
            out.flush()
        else:
            ctx.stdout.write(data.decode(errors="replace"))
    return rc


def _flags(argv: list[str]) -> set[str]:
    """Single-letter flags of ``-ld``-style options."""
    return {c for a in argv if a.startswith("-") and not a.startswith("--") for c in a[1:]}


def ls(argv: list[str], ctx: CommandContext) -> int:
    flags = _flags(argv)
    long = "l" in flags
    paths = [a for a in argv if not a.startswith("-")] or ["/sys"]
    rc = 0
    b = ctx.backend
    for path in paths:
        if not b.lexists(path):
            ctx.stderr.write(f"ls: cannot access '{path}': No such file or directory\n")
            rc = 2
            continue
        try:
            if "d" in flags or not b.isdir(path):
                if long and b.islink(path):
                    ctx.stdout.write(f"{path} -> {b.readlink(path)}\n")
                else:
                    ctx.stdout.write(path + "\n")
                continue
            names = sorted(b.listdir(path))
        except OSError as e:
            _err(ctx, "ls", path, e)
            rc = 2
            continue
        if len(paths) > 1:
            ctx.stdout.write(f"{path}:\n")
        for n in names:
            p = posixpath.join(path, n)
            if long and b.islink(p):
                ctx.stdout.write(f"{n} -> {b.readlink(p)}\n")
            elif long and b.isdir(p):
                ctx.stdout.write(f"{n}/\n")
            else:
                ctx.stdout.write(n + "\n")
    return rc


def readlink(argv: list[str], ctx: CommandContext) -> int:
    canon = "-f" in argv
    rc = 0
    for path in (a for a in argv if not a.startswith("-")):
        try:
            ctx.stdout.write((ctx.backend.realpath(path) if canon else ctx.backend.readlink(path)) + "\n")
        except OSError:
            rc = 1
    return rc


def tree(argv: list[str], ctx: CommandContext) -> int:
    root = next((a for a in argv if not a.startswith("-")), "/sys/bus/cxl/devices")
    b = ctx.backend

    def walk(path: str, prefix: str, depth: int) -> None:
        if depth > 12:
            return
        names = sorted(b.listdir(path))
        for i, n in enumerate(names):
            p = posixpath.join(path, n)
            last = i == len(names) - 1
            branch = "`-- " if last else "|-- "
            if b.islink(p):
                ctx.stdout.write(f"{prefix}{branch}{n} -> {b.readlink(p)}\n")
            elif b.isdir(p):
                ctx.stdout.write(f"{prefix}{branch}{n}\n")
                walk(p, prefix + ("    " if last else "|   "), depth + 1)
            else:
                ctx.stdout.write(f"{prefix}{branch}{n}\n")

    ctx.stdout.write(root + "\n")
    try:
        walk(root, "", 0)
    except BrokenPipeError:
        raise
    except OSError as e:
        _err(ctx, "tree", root, e)
        return 1
    return 0


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    return {"cat": cat, "ls": ls, "readlink": readlink, "tree": tree}[name](argv, ctx)
