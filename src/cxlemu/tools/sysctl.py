"""sysctl (procps-ng 4.x src/sysctl.c) over a backend's /proc/sys.

Reads ``key`` (dots or slashes), writes ``key=value`` or ``-w key=value``,
``-a`` lists everything, ``-n`` values only, ``-N`` names only, ``-q``
quiet, ``-e`` ignore unknown keys, ``-p FILE`` loads settings, ``-r``
pattern.  Messages and exit status as procps prints them:

* unknown key on read: ``sysctl: cannot stat /proc/sys/x/y: No such file or
  directory`` (exit 1 — procps adds the per-key status; 255 when a read
  returned -1 for an empty key);
* refused write: ``sysctl: setting key "kernel.numa_balancing": Invalid
  argument``; read-only: ``sysctl: setting key "...": Operation not
  permitted``; a value without ``=`` under ``-w``: ``sysctl: "key" must be
  of the form name=value`` ... as in ``parse_setting_line``.
"""

from __future__ import annotations

import errno
import getopt
import os
import re

from cxlemu.tools.common.command import CommandContext

PROC = "/proc/sys/"
VERBOTEN = ("stat_refresh",)
USAGE = """
Usage:
 sysctl [options] [variable[=value] ...]

Options:
  -a, --all            display all variables
  -A                   alias of -a
  -X                   alias of -a
      --deprecated     include deprecated parameters to listing
      --dry-run        Print the key and values but do not write
  -b, --binary         print value without new line
  -e, --ignore         ignore unknown variables errors
  -N, --names          print variable names without values
  -n, --values         print only values of the given variable(s)
  -p, --load[=<file>]  read values from file
  -f                   alias of -p
      --system         read values from all system directories
  -r, --pattern <expression>
                       select setting that match expression
  -q, --quiet          do not echo variable set
  -w, --write          enable writing a value to variable
  -o                   does nothing
  -x                   does nothing
  -d                   alias of -h

 -h, --help     display this help and exit
 -V, --version  output version information and exit

For more details see sysctl(8).
"""


class Opts:
    def __init__(self):
        self.print_name = True
        self.print_newline = True
        self.ignore_error = False
        self.quiet = False
        self.names_only = False
        self.dry_run = False
        self.pattern: str | None = None


def slashdot(key: str, old: str, new: str) -> str:
    """procps slashdot(): swap separators after the first one found."""
    i = min([p for p in (key.find("/"), key.find(".")) if p >= 0], default=-1)
    if i < 0 or key[i] == new:
        return key
    head, tail = key[:i], key[i:]
    return head + tail.translate(str.maketrans({old: new, new: old}))


def _strerror(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


def read_setting(ctx: CommandContext, o: Opts, name: str) -> int:
    b = ctx.backend
    if not name:
        ctx.stderr.write(f'sysctl: "{name}" is an unknown key\n')
        return -1
    path = PROC + slashdot(name, ".", "/")
    outname = slashdot(name, "/", ".")
    if not b.exists(path):
        if not o.ignore_error:
            ctx.stderr.write(f"sysctl: cannot stat {path}: No such file or directory\n")
            return 1
        return 0
    if b.isdir(path):
        return display_all(ctx, o, path + "/")
    if o.pattern and not re.search(o.pattern, outname):
        return 0
    if o.names_only:
        ctx.stdout.write(f"{outname}\n")
        return 0
    try:
        value = b.read(path)
    except OSError as e:
        if e.errno == errno.EACCES:
            ctx.stderr.write(f"sysctl: permission denied on key '{outname}'\n")
        else:
            ctx.stderr.write(f'sysctl: reading key "{outname}": {_strerror(e)}\n')
        return 1
    if not value:
        return 0
    if o.print_name:
        ctx.stdout.write(f"{outname} = {value}" + ("" if value.endswith("\n") else "\n"))
    else:
        ctx.stdout.write(value if o.print_newline else value.split("\n", 1)[0])
    return 0


def display_all(ctx: CommandContext, o: Opts, path: str) -> int:
    b = ctx.backend
    rc = 0
    try:
        names = b.listdir(path.rstrip("/") or "/")
    except OSError:
        ctx.stderr.write(f'sysctl: unable to open directory "{path}"\n')
        return 1
    for n in names:
        if n in VERBOTEN:
            continue
        p = path + n
        if b.isdir(p):
            rc |= display_all(ctx, o, p + "/")
        else:
            mode = _mode(b, p)
            if mode is not None and not mode & 0o400:
                continue
            rc |= read_setting(ctx, o, p[len(PROC):])
    return rc


def _mode(b, path: str) -> int | None:
    fn = getattr(b, "mode", None)
    if fn is not None:
        try:
            return fn(path)
        except OSError:
            return None
    vfs = getattr(b, "vfs", None)
    if vfs is not None:
        try:
            return vfs.mode(path)
        except OSError:
            return None
    try:
        return os.stat(b.path(path)).st_mode if hasattr(b, "path") else None
    except OSError:
        return None


def write_setting(ctx: CommandContext, o: Opts, key: str, value: str, ignore_failure: bool = False) -> int:
    b = ctx.backend
    path = PROC + slashdot(key, ".", "/")
    dotted = slashdot(path[len(PROC):], "/", ".")
    suffix = ", ignoring" if ignore_failure else ""
    if not b.exists(path):
        if not o.ignore_error:
            ctx.stderr.write(f"sysctl: cannot stat {path}: No such file or directory\n")
            return 1
        return 0
    if b.isdir(path):
        ctx.stderr.write(f'sysctl: setting key "{dotted}": Is a directory\n')
        return 1
    mode = _mode(b, path)
    if mode is not None and not mode & 0o200:
        ctx.stderr.write(f'sysctl: setting key "{dotted}": Operation not permitted\n')
        return 1
    if not o.dry_run:
        try:
            b.write(path, f"{value}\n")
        except OSError as e:
            if e.errno in (errno.EPERM, errno.EROFS, errno.EACCES):
                ctx.stderr.write(f'sysctl: permission denied on key "{dotted}"{suffix}\n')
            elif e.errno == errno.ENOENT:
                ctx.stderr.write(f'sysctl: "{dotted}" is an unknown key{suffix}\n')
            else:
                ctx.stderr.write(f'sysctl: setting key "{dotted}"{suffix}: {_strerror(e)}\n')
            return 0 if ignore_failure else 1
    if not o.quiet or o.dry_run:
        if o.names_only:
            ctx.stdout.write(f"{dotted}\n")
        elif o.print_name:
            ctx.stdout.write(f"{dotted} = {value}\n")
        else:
            ctx.stdout.write(f"{value}\n" if o.print_newline else value)
    return 0


def parse_setting_line(ctx: CommandContext, source: str, lineno: int, line: str):
    """(key, value, ignore_failure) or None; procps parse_setting_line()."""
    key = line.lstrip()
    if len(key) < 2 or key[0] in "#;":
        return None
    if "=" not in key:
        if key[0] == "-":
            return None           # a glob exclusion
        ctx.stderr.write(f"sysctl: {source}({lineno}): invalid syntax, continuing...\n")
        return None
    k, _, v = key.partition("=")
    ignore = False
    if k.startswith("-"):
        ignore = True
        k = k[1:]
    return k.rstrip(), v.strip(), ignore


def tool_main(name: str, argv: list[str], ctx: CommandContext) -> int:
    o = Opts()
    try:
        opts, args = getopt.gnu_getopt(argv, "bneNwfp::qoxaAXr:Vdh",
                                       ["all", "deprecated", "dry-run", "binary", "ignore", "names", "values",
                                        "load=", "quiet", "write", "system", "pattern=", "help", "version"])
    except getopt.GetoptError as e:
        opt = e.opt
        if len(opt) == 1:
            ctx.stderr.write(f"sysctl: invalid option -- '{opt}'\n")
        else:
            ctx.stderr.write(f"sysctl: unrecognized option '--{opt}'\n")
        ctx.stderr.write(USAGE)
        return 1
    if not argv:
        ctx.stderr.write(USAGE)
        return 1
    write_mode = display = False
    preload: list[str] | None = None
    for opt, val in opts:
        if opt in ("-b", "--binary"):
            o.print_newline = False
            o.print_name = False
        elif opt in ("-n", "--values"):
            o.print_name = False
        elif opt in ("-e", "--ignore"):
            o.ignore_error = True
        elif opt in ("-N", "--names"):
            o.names_only = True
        elif opt in ("-w", "--write"):
            write_mode = True
        elif opt in ("-f", "-p", "--load"):
            preload = [val] if val else []
        elif opt in ("-q", "--quiet"):
            o.quiet = True
        elif opt in ("-a", "-A", "-X", "--all"):
            display = True
        elif opt == "--dry-run":
            o.dry_run = True
        elif opt in ("-r", "--pattern"):
            o.pattern = val
        elif opt in ("-V", "--version"):
            ctx.stdout.write("sysctl from procps-ng 4.0.2\n")
            return 0
        elif opt in ("-h", "-d", "--help"):
            ctx.stdout.write(USAGE)
            return 0
        elif opt == "--system":
            o.ignore_error = True
    if display:
        return display_all(ctx, o, PROC)
    if preload is not None:
        files = preload or (args if args else ["/etc/sysctl.conf"])
        rc = 0
        for f in files:
            try:
                with open(f) as fh:
                    lines = fh.read().splitlines()
            except OSError as e:
                ctx.stderr.write(f'sysctl: cannot open "{f}": {_strerror(e)}\n')
                return 1
            for i, line in enumerate(lines, 1):
                s = parse_setting_line(ctx, f, i, line)
                if s is not None:
                    rc |= write_setting(ctx, o, s[0], s[1], s[2])
        return rc
    if not args:
        ctx.stderr.write("sysctl: no variables specified\nTry `sysctl --help' for more information.\n")
        return 1
    if o.names_only and o.quiet:
        ctx.stderr.write("sysctl: options -N and -q cannot coexist\nTry `sysctl --help' for more information.\n")
        return 1
    rc = 0
    for a in args:
        if write_mode or "=" in a:
            s = parse_setting_line(ctx, "command line", 0, a)
            if s is None:
                rc |= 1
                continue
            rc |= write_setting(ctx, o, s[0], s[1], s[2])
        else:
            rc += read_setting(ctx, o, a)
    return rc & 0xFF
