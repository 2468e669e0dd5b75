"""Command-line option parsing with the observable behaviour of ndctl's
git-derived ``util/parse-options.c`` (shared by cxl, ndctl and daxctl).

Everything here is written from the documented/observed behaviour of the
real tools (Debian v76.1 binaries, whose parser is unchanged in v81):

* option kinds (``OPT_BOOLEAN``, ``OPT_INCR``, ``OPT_STRING``, ``OPT_INTEGER``,
  ``OPT_UINTEGER``, ``OPT_LONG``, ``OPT_U64``, ``OPT_CALLBACK``,
  ``OPT_FILENAME``, ``OPT_BIT``, ``OPT_SET_UINT``, ``OPT_SET_PTR``,
  ``OPT_GROUP``, ``OPT_ARGUMENT``, ``OPT_END``);
* ``-abc`` bundles, ``-sVALUE``, ``-s VALUE``, ``--long=value``,
  ``--long value``, ``--no-long``, unique-prefix abbreviations, ``--``;
* positionals may be mixed with options (they are collected in order);
* exact error texts (``  Error: unknown option `x'`` ...), usage layout
  (24-column option column) and exit codes (129 for usage, 130 for
  ``--list-opts``/``--list-cmds``).

Errors never write to a stream directly: they raise :class:`UsageError`
(a :class:`CommandExit`) carrying the text for stderr/stdout and the exit
code; ``cxlemu.tools.common.command.Tool`` prints it.

Commands receive ``argv`` with ``argv[0]`` = the command name, as the C
``cmd_*`` functions do; :func:`parse_options` skips ``argv[0]`` and returns
the remaining positionals without it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import field
from typing import Any, Callable, NamedTuple, NoReturn, Sequence, TextIO

from cxlemu.util.lazydc import dataclass

__all__ = [
    "CommandExit", "UsageError", "OptType", "Option", "ParseState", "Parsed",
    "PARSE_OPT_KEEP_DASHDASH", "PARSE_OPT_STOP_AT_NON_OPTION",
    "PARSE_OPT_KEEP_ARGV0", "PARSE_OPT_KEEP_UNKNOWN",
    "PARSE_OPT_NO_INTERNAL_HELP", "PARSE_OPT_OPTARG", "PARSE_OPT_NOARG",
    "PARSE_OPT_NONEG", "PARSE_OPT_HIDDEN", "PARSE_OPT_LASTARG_DEFAULT",
    "OPT_END", "OPT_ARGUMENT", "OPT_GROUP", "OPT_BIT", "OPT_BOOLEAN",
    "OPT_BOOLEAN_SET", "OPT_INCR", "OPT_SET_UINT", "OPT_SET_PTR",
    "OPT_INTEGER", "OPT_UINTEGER", "OPT_LONG", "OPT_U64", "OPT_STRING",
    "OPT_FILENAME", "OPT_CALLBACK", "OPT_CALLBACK_NOOPT",
    "OPT_CALLBACK_DEFAULT", "OPT_CALLBACK_DEFAULT_NOOPT", "OPT__VERBOSITY",
    "parse_options", "usage_with_options", "usage_with_options_text",
    "parse_options_usage_text", "error_text", "warning_text", "die_text",
    "usage_text", "strtol", "strtoull", "ULLONG_MAX",
    "USAGE_EXIT", "LIST_EXIT", "DIE_EXIT",
]

# Exit codes used by parse-options.c / usage.c.
USAGE_EXIT = 129   # usage_with_options(), usage(), check_typos()
LIST_EXIT = 130    # --list-opts / --list-cmds
DIE_EXIT = 128     # die()

ULLONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1
LONG_MIN = -(1 << 63)


class CommandExit(Exception):
    """A C ``exit(code)`` from inside a command, with pending output.

    ``stderr``/``stdout`` hold text that must be written before exiting.
    """

    def __init__(self, exit_code: int, stderr: str = "", stdout: str = "") -> None:
        super().__init__(exit_code, stderr, stdout)
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout


class UsageError(CommandExit):
    """Usage problem: exit 129 with the text (error + usage) for stderr."""

    def __init__(self, text: str = "", exit_code: int = USAGE_EXIT, stdout: str = "") -> None:
        super().__init__(exit_code, text, stdout)

    @property
    def text(self) -> str:
        return self.stderr


# --------------------------------------------------------------------------
# usage.c message helpers: report() prints " <prefix><msg>\n" where the
# prefix itself starts with a space, and formats into a 1024-byte buffer.
# --------------------------------------------------------------------------

_REPORT_BUF = 1024


def _report(prefix: str, msg: str) -> str:
    raw = msg.encode("utf-8", "surrogateescape")
    if len(raw) >= _REPORT_BUF:  # vsnprintf truncation
        raw = raw[: _REPORT_BUF - 1]
    return f" {prefix}{raw.decode('utf-8', 'surrogateescape')}\n"


def error_text(msg: str) -> str:
    """Text of ``error(msg)``: ``"  Error: <msg>\\n"`` (msg may end in \\n)."""
    return _report(" Error: ", msg)


def warning_text(msg: str) -> str:
    """Text of ``warning(msg)``: ``"  Warning: <msg>\\n"``."""
    return _report(" Warning: ", msg)


def die_text(msg: str) -> str:
    """Text of ``die(msg)`` (which then exits 128)."""
    return _report(" Fatal: ", msg)


def usage_text(msg: str) -> str:
    """Text of ``usage(msg)`` (which then exits 129): note the capital U."""
    return f"\n Usage: {msg}\n"


# --------------------------------------------------------------------------
# C number conversions (glibc strtol / strtoull, "C" locale)
# --------------------------------------------------------------------------

_C_SPACE = " \t\n\v\f\r"
_DIGITS = {
    8: re.compile(r"[0-7]+"),
    10: re.compile(r"[0-9]+"),
    16: re.compile(r"[0-9a-fA-F]+"),
}


def _c_scan(s: str, base: int) -> tuple[int, bool, int] | None:
    """Shared scanner: returns (magnitude, negative, end index) or None.

    ``None`` means no digits were found (C sets endptr to the start).
    """
    i = len(s) - len(s.lstrip(_C_SPACE))
    neg = False
    if i < len(s) and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    if base in (0, 16) and s[i:i + 2] in ("0x", "0X") and \
            _DIGITS[16].match(s, i + 2):
        i += 2
        base = 16
    elif base == 0:
        base = 8 if s[i:i + 1] == "0" else 10
    if base not in _DIGITS:  # pragma: no cover - only bases 0/8/10/16 used
        raise ValueError(f"unsupported base {base}")
    m = _DIGITS[base].match(s, i)
    if not m:
        return None
    return int(m.group(0), base), neg, m.end()


def strtoull(s: str, base: int = 10) -> tuple[int, int]:
    """glibc ``strtoull``: returns ``(value, end_index)``.

    A leading '-' negates modulo 2**64; overflow yields ``ULLONG_MAX``.
    """
    r = _c_scan(s, base)
    if r is None:
        return 0, 0
    mag, neg, end = r
    if mag > ULLONG_MAX:
        return ULLONG_MAX, end
    return ((-mag) & ULLONG_MAX if neg else mag), end


def strtol(s: str, base: int = 10) -> tuple[int, int]:
    """glibc ``strtol`` (64-bit long): returns ``(value, end_index)``,
    clamped to ``LONG_MIN``/``LONG_MAX`` on overflow."""
    r = _c_scan(s, base)
    if r is None:
        return 0, 0
    mag, neg, end = r
    val = -mag if neg else mag
    return max(LONG_MIN, min(LONG_MAX, val)), end


def _to_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# --------------------------------------------------------------------------
# Option table
# --------------------------------------------------------------------------

class OptType(enum.Enum):
    END = "end"
    ARGUMENT = "argument"
    GROUP = "group"
    BIT = "bit"
    BOOLEAN = "boolean"
    INCR = "incr"
    SET_UINT = "set_uint"
    SET_PTR = "set_ptr"
    STRING = "string"
    INTEGER = "integer"
    LONG = "long"
    CALLBACK = "callback"
    U64 = "u64"
    UINTEGER = "uinteger"
    FILENAME = "filename"


# parse_options() flags
PARSE_OPT_KEEP_DASHDASH = 1
PARSE_OPT_STOP_AT_NON_OPTION = 2
PARSE_OPT_KEEP_ARGV0 = 4
PARSE_OPT_KEEP_UNKNOWN = 8
PARSE_OPT_NO_INTERNAL_HELP = 16

# per-option flags
PARSE_OPT_OPTARG = 1
PARSE_OPT_NOARG = 2
PARSE_OPT_NONEG = 4
PARSE_OPT_HIDDEN = 8
PARSE_OPT_LASTARG_DEFAULT = 16

_NOARG_TYPES = (OptType.BOOLEAN, OptType.INCR, OptType.BIT,
                OptType.SET_UINT, OptType.SET_PTR)
_NUMERIC_TYPES = (OptType.LONG, OptType.U64, OptType.INTEGER, OptType.UINTEGER)

Callback = Callable[["ParseState", "Option", "str | None", bool], int]


@dataclass(frozen=True)
class Option:
    """One entry of an option table (``struct option``).

    ``dest`` names the key of the values dict the option writes.
    ``callback(state, option, arg, unset)`` returns 0 on success; any other
    value makes the parser print the usage for this option and exit 129.
    """

    type: OptType
    short: str | None = None
    long: str | None = None
    dest: str | None = None
    argh: str | None = None
    help: str = ""
    flags: int = 0
    callback: Callback | None = None
    defval: Any = None
    set_dest: str | None = None

    def __post_init__(self) -> None:
        if self.short is not None and len(self.short) != 1:
            raise ValueError(f"short option must be one character: {self.short!r}")


def _short(s: str | int | None) -> str | None:
    if s in (None, "", 0):
        return None
    if isinstance(s, int):
        return chr(s)
    return s


def OPT_END() -> Option:
    return Option(OptType.END)


def OPT_ARGUMENT(long: str, help: str) -> Option:
    return Option(OptType.ARGUMENT, long=long, help=help)


def OPT_GROUP(help: str) -> Option:
    return Option(OptType.GROUP, help=help)


def OPT_BIT(short, long, dest, help, bit: int) -> Option:
    return Option(OptType.BIT, _short(short), long, dest, help=help, defval=bit)


def OPT_BOOLEAN(short, long, dest, help) -> Option:
    return Option(OptType.BOOLEAN, _short(short), long, dest, help=help)


def OPT_BOOLEAN_SET(short, long, dest, set_dest, help) -> Option:
    return Option(OptType.BOOLEAN, _short(short), long, dest, help=help, set_dest=set_dest)


def OPT_INCR(short, long, dest, help) -> Option:
    return Option(OptType.INCR, _short(short), long, dest, help=help)


def OPT_SET_UINT(short, long, dest, help, value: int) -> Option:
    return Option(OptType.SET_UINT, _short(short), long, dest, help=help, defval=value)


def OPT_SET_PTR(short, long, dest, help, value: Any) -> Option:
    return Option(OptType.SET_PTR, _short(short), long, dest, help=help, defval=value)


def OPT_INTEGER(short, long, dest, help) -> Option:
    return Option(OptType.INTEGER, _short(short), long, dest, help=help)


def OPT_UINTEGER(short, long, dest, help) -> Option:
    return Option(OptType.UINTEGER, _short(short), long, dest, help=help)


def OPT_LONG(short, long, dest, help) -> Option:
    return Option(OptType.LONG, _short(short), long, dest, help=help)


def OPT_U64(short, long, dest, help) -> Option:
    return Option(OptType.U64, _short(short), long, dest, help=help)


def OPT_STRING(short, long, dest, argh, help, *, flags: int = 0, defval: Any = None) -> Option:
    return Option(OptType.STRING, _short(short), long, dest, argh, help, flags, defval=defval)


def OPT_FILENAME(short, long, dest, argh, help) -> Option:
    return Option(OptType.FILENAME, _short(short), long, dest, argh, help)


def OPT_CALLBACK(short, long, dest, argh, help, callback: Callback) -> Option:
    return Option(OptType.CALLBACK, _short(short), long, dest, argh, help, callback=callback)


def OPT_CALLBACK_NOOPT(short, long, dest, argh, help, callback: Callback) -> Option:
    return Option(OptType.CALLBACK, _short(short), long, dest, argh, help,
                  PARSE_OPT_NOARG, callback)


def OPT_CALLBACK_DEFAULT(short, long, dest, argh, help, callback: Callback, default) -> Option:
    return Option(OptType.CALLBACK, _short(short), long, dest, argh, help,
                  PARSE_OPT_LASTARG_DEFAULT, callback, default)


def OPT_CALLBACK_DEFAULT_NOOPT(short, long, dest, argh, help, callback: Callback,
                               default) -> Option:
    return Option(OptType.CALLBACK, _short(short), long, dest, argh, help,
                  PARSE_OPT_LASTARG_DEFAULT | PARSE_OPT_NOARG, callback, default)


def _verbosity_cb(state: "ParseState", opt: Option, arg: str | None, unset: bool) -> int:
    cur = state.values.get(opt.dest, 0) or 0
    if unset:
        state.values[opt.dest] = 0
    elif opt.short == "v":
        state.values[opt.dest] = cur + 1 if cur >= 0 else 1
    else:
        state.values[opt.dest] = cur - 1 if cur <= 0 else -1
    return 0


def OPT__VERBOSITY(dest: str) -> list[Option]:
    """``-v/--verbose`` and ``-q/--quiet`` sharing one signed counter."""
    return [
        Option(OptType.CALLBACK, "v", "verbose", dest, None, "be more verbose",
               PARSE_OPT_NOARG, _verbosity_cb),
        Option(OptType.CALLBACK, "q", "quiet", dest, None, "be more quiet",
               PARSE_OPT_NOARG, _verbosity_cb),
    ]


def _table(options: Sequence[Option]) -> list[Option]:
    """The options up to (not including) the first OPT_END."""
    out: list[Option] = []
    for o in options:
        if o.type is OptType.END:
            break
        out.append(o)
    return out


_DEFAULTS: dict[OptType, Any] = {
    OptType.BIT: 0, OptType.BOOLEAN: False, OptType.INCR: 0,
    OptType.SET_UINT: 0, OptType.SET_PTR: None, OptType.STRING: None,
    OptType.INTEGER: 0, OptType.LONG: 0, OptType.U64: 0,
    OptType.UINTEGER: 0, OptType.FILENAME: None,
}


# --------------------------------------------------------------------------
# usage text (print_option_help / usage_with_options_internal)
# --------------------------------------------------------------------------

USAGE_OPTS_WIDTH = 24
USAGE_GAP = 2


def _blen(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def _option_help_text(o: Option, full: bool) -> str:
    if o.type is OptType.GROUP:
        return "\n" + (f"{o.help}\n" if o.help else "")
    if not full and o.flags & PARSE_OPT_HIDDEN:
        return ""
    head = "    " + (f"-{o.short}" if o.short else "    ")
    if o.long and o.short:
        head += ", "
    if o.long:
        head += f"--{o.long}"
    optarg = bool(o.flags & PARSE_OPT_OPTARG)
    if o.type in _NUMERIC_TYPES:
        head += ("[=<n>]" if o.long else "[<n>]") if optarg else " <n>"
    elif o.type in (OptType.CALLBACK, OptType.FILENAME, OptType.STRING) and \
            not (o.type is OptType.CALLBACK and o.flags & PARSE_OPT_NOARG):
        inner = f"<{o.argh}>" if o.argh else "..."
        if optarg:
            head += f"[={inner}]" if o.long else f"[{inner}]"
        else:
            head += f" {inner}"
    pos = _blen(head)
    if pos <= USAGE_OPTS_WIDTH:
        pad = USAGE_OPTS_WIDTH - pos
    else:
        head += "\n"
        pad = USAGE_OPTS_WIDTH
    return f"{head}{' ' * (pad + USAGE_GAP)}{o.help}\n"


def _usage_header(usages: Sequence[str]) -> str:
    lines = list(usages)
    out = [f"\n usage: {lines[0]}\n"]
    i = 1
    while i < len(lines) and lines[i]:
        out.append(f"    or: {lines[i]}\n")
        i += 1
    for line in lines[i:]:
        out.append(f"    {line}\n" if line else "\n")
    return "".join(out)


def usage_with_options_text(usages: Sequence[str], options: Sequence[Option],
                            full: bool = False) -> str:
    """The text ``usage_with_options()`` writes to stderr (``-h``)."""
    if not usages:
        return ""
    opts = _table(options)
    out = [_usage_header(usages)]
    if not opts or opts[0].type is not OptType.GROUP:
        out.append("\n")
    out.extend(_option_help_text(o, full) for o in opts)
    out.append("\n")
    return "".join(out)


def usage_with_options(usages: Sequence[str], options: Sequence[Option],
                       prefix_text: str = "") -> NoReturn:
    """``usage_with_options()``: raise :class:`UsageError` (exit 129).

    ``prefix_text`` is stderr text to emit first, e.g.
    ``usage_with_options(u, options, error_text('unknown parameter "x"\n'))``.
    """
    raise UsageError(prefix_text + usage_with_options_text(usages, options))


def parse_options_usage_text(usages: Sequence[str] | None, options: Sequence[Option],
                             optstr: str, short_opt: bool) -> str:
    """Usage header plus the help line of the option named by ``optstr``
    (printed after a bad value/ambiguity)."""
    out = []
    if usages:
        out.append(_usage_header(usages))
        out.append("\n")
    for o in _table(options):
        if short_opt:
            if o.short is not None and optstr[:1] == o.short:
                out.append(_option_help_text(o, False))
                break
            continue
        if o.long is None:
            continue
        if optstr.startswith(o.long) or \
                (optstr.startswith("no-") and optstr[3:].startswith(o.long)):
            out.append(_option_help_text(o, False))
            break
    return "".join(out)


# --------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------

_OPT_SHORT = 1
_OPT_UNSET = 2
_ERR = -1        # print usage for the option and exit 129
_UNKNOWN = -2    # unknown option/switch


@dataclass
class ParseState:
    """Mutable parsing state handed to option callbacks."""

    values: dict[str, Any]
    prefix: str | None = None
    stderr: list[str] = field(default_factory=list)

    def error(self, msg: str) -> int:
        """``error()``: queue ``"  Error: msg\\n"`` and return -1."""
        self.stderr.append(error_text(msg))
        return -1


class Parsed(NamedTuple):
    values: dict[str, Any]
    args: list[str]


class _Cursor:
    def __init__(self, argv: Sequence[str], flags: int, state: ParseState) -> None:
        self.rest = list(argv[1:])     # ctx->argv[0 .. argc)
        self.out: list[str] = [argv[0]] if flags & PARSE_OPT_KEEP_ARGV0 else []
        self.opt: str | None = None    # pending short bundle / "=value"
        self.flags = flags
        self.state = state
        self.fake_arg: str | None = None  # argv[0] rewritten for bundles

    @property
    def values(self) -> dict[str, Any]:
        return self.state.values


def _opterror(state: ParseState, o: Option, reason: str, flags: int) -> int:
    if flags & _OPT_SHORT:
        return state.error(f"switch `{o.short}' {reason}")
    if flags & _OPT_UNSET:
        return state.error(f"option `no-{o.long}' {reason}")
    return state.error(f"option `{o.long}' {reason}")


def _get_arg(cur: _Cursor, o: Option, flags: int) -> tuple[int, str | None]:
    if cur.opt is not None:
        arg, cur.opt = cur.opt, None
        return 0, arg
    if o.flags & PARSE_OPT_LASTARG_DEFAULT and \
            (len(cur.rest) == 1 or cur.rest[1][:1] == "-"):
        return 0, o.defval
    if len(cur.rest) > 1:
        cur.rest.pop(0)
        return 0, cur.rest[0]
    return _opterror(cur.state, o, "requires a value", flags), None


def _fix_filename(prefix: str | None, value: str | None) -> str | None:
    if not value or not prefix or value.startswith("/") or value == "-":
        return value
    return prefix + value


def _numeric(cur: _Cursor, o: Option, flags: int) -> int:
    vals = cur.values
    if flags & _OPT_UNSET:
        vals[o.dest] = 0
        return 0
    if o.flags & PARSE_OPT_OPTARG and cur.opt is None:
        vals[o.dest] = o.defval
        return 0
    rc, arg = _get_arg(cur, o, flags)
    if rc:
        return _ERR
    assert arg is not None
    if o.type is OptType.U64:
        value, end = strtoull(arg, 10)
    else:
        value, end = strtol(arg, 10)
        if o.type is OptType.INTEGER:
            value = _to_int32(value)
        elif o.type is OptType.UINTEGER:
            value &= 0xFFFFFFFF
    vals[o.dest] = value
    if end != len(arg):
        return _opterror(cur.state, o, "expects a numerical value", flags)
    return 0


def _get_value(cur: _Cursor, o: Option, flags: int) -> int:
    unset = bool(flags & _OPT_UNSET)
    state, vals = cur.state, cur.values
    if unset and cur.opt is not None:
        return _opterror(state, o, "takes no value", flags)
    if unset and o.flags & PARSE_OPT_NONEG:
        return _opterror(state, o, "isn't available", flags)
    if not flags & _OPT_SHORT and cur.opt is not None:
        if o.type in _NOARG_TYPES or \
                (o.type is OptType.CALLBACK and o.flags & PARSE_OPT_NOARG):
            return _opterror(state, o, "takes no value", flags)

    t = o.type
    if t is OptType.BIT:
        cur_v = vals.get(o.dest, 0)
        vals[o.dest] = cur_v & ~o.defval if unset else cur_v | o.defval
        return 0
    if t is OptType.BOOLEAN:
        vals[o.dest] = not unset
        if o.set_dest:
            vals[o.set_dest] = True
        return 0
    if t is OptType.INCR:
        vals[o.dest] = 0 if unset else vals.get(o.dest, 0) + 1
        return 0
    if t is OptType.SET_UINT:
        vals[o.dest] = 0 if unset else o.defval
        return 0
    if t is OptType.SET_PTR:
        vals[o.dest] = None if unset else o.defval
        return 0
    if t in (OptType.STRING, OptType.FILENAME):
        rc = 0
        if unset:
            vals[o.dest] = None
        elif o.flags & PARSE_OPT_OPTARG and cur.opt is None:
            vals[o.dest] = o.defval
        else:
            rc, arg = _get_arg(cur, o, flags)
            if rc:
                return _ERR
            vals[o.dest] = arg
        if t is OptType.FILENAME:
            vals[o.dest] = _fix_filename(state.prefix, vals[o.dest])
        return rc
    if t is OptType.CALLBACK:
        assert o.callback is not None
        if unset:
            return _ERR if o.callback(state, o, None, True) else 0
        if o.flags & PARSE_OPT_NOARG or \
                (o.flags & PARSE_OPT_OPTARG and cur.opt is None):
            return _ERR if o.callback(state, o, None, False) else 0
        rc, arg = _get_arg(cur, o, flags)
        if rc:
            return _ERR
        return _ERR if o.callback(state, o, arg, False) else 0
    if t in _NUMERIC_TYPES:
        return _numeric(cur, o, flags)
    # OPTION_END / ARGUMENT / GROUP can never be selected
    raise CommandExit(DIE_EXIT, "".join(state.stderr) + die_text(
        "should not happen, someone must be hit on the forehead"))


def _parse_short(cur: _Cursor, opts: list[Option]) -> int:
    assert cur.opt
    c = cur.opt[0]
    for o in opts:
        if o.short == c:
            cur.opt = cur.opt[1:] or None
            return _get_value(cur, o, _OPT_SHORT)
    return _UNKNOWN


def _parse_long(cur: _Cursor, arg: str, opts: list[Option]) -> int:
    """Match ``arg`` (text after "--") against the long names."""
    eq = arg.find("=")
    name_len = eq if eq >= 0 else len(arg)
    abbrev: Option | None = None
    ambiguous: Option | None = None
    abbrev_flags = ambiguous_flags = 0

    for o in opts:
        if not o.long:
            continue
        flags = 0
        rest = arg[len(o.long):] if arg.startswith(o.long) else None
        if o.type is OptType.ARGUMENT:
            if rest is None:
                continue
            if rest.startswith("="):
                return _opterror(cur.state, o, "takes no value", flags)
            if rest:
                continue
            cur.out.append("--" + arg)
            return 0
        if rest is None:
            abbreviated = False
            if o.long.startswith("no-"):
                # "--foo" negates an option that is itself named "no-foo"
                positive = o.long[3:]
                if arg.startswith(positive):
                    rest = arg[len(positive):]
                    flags |= _OPT_UNSET
                elif positive.startswith(arg):
                    flags |= _OPT_UNSET
                    abbreviated = True
            if rest is None and not abbreviated:
                if o.long.startswith(arg[:name_len]):
                    abbreviated = True
                elif "no-".startswith(arg):
                    flags |= _OPT_UNSET
                    abbreviated = True
                elif not arg.startswith("no-"):
                    continue
                else:
                    flags |= _OPT_UNSET
                    tail = arg[3:]
                    if tail.startswith(o.long):
                        rest = tail[len(o.long):]
                    elif o.long.startswith(tail):
                        abbreviated = True
                    else:
                        continue
            if abbreviated:
                if abbrev is not None:
                    ambiguous, ambiguous_flags = abbrev, abbrev_flags
                if not flags & _OPT_UNSET and eq >= 0:
                    cur.opt = arg[eq + 1:]
                abbrev, abbrev_flags = o, flags
                continue
        assert rest is not None
        if rest:
            if rest[0] != "=":
                continue
            cur.opt = rest[1:]
        return _get_value(cur, o, flags)

    if ambiguous is not None:
        assert abbrev is not None
        neg1 = "no-" if ambiguous_flags & _OPT_UNSET else ""
        neg2 = "no-" if abbrev_flags & _OPT_UNSET else ""
        return cur.state.error(
            f"Ambiguous option: {arg} (could be --{neg1}{ambiguous.long} "
            f"or --{neg2}{abbrev.long})")
    if abbrev is not None:
        return _get_value(cur, abbrev, abbrev_flags)
    return _UNKNOWN


def _check_typos(state: ParseState, arg: str, opts: list[Option]) -> None:
    """``-verbose`` style mistakes: exit 129 without the usage text."""
    if len(arg) < 3:
        return
    if arg.startswith("no-") or any(o.long and o.long.startswith(arg) for o in opts):
        raise UsageError("".join(state.stderr) +
                         error_text(f"did you mean `--{arg}` (with two dashes ?)"))


class _Help(Exception):
    def __init__(self, text: str, stdout: str = "", code: int = USAGE_EXIT) -> None:
        super().__init__(text)
        self.text, self.stdout, self.code = text, stdout, code


def _step(cur: _Cursor, opts: list[Option], usages: Sequence[str],
          subcommands: Sequence[str] | None) -> str | None:
    """Walk the arguments.  Returns None when done, or "unknown"."""
    internal_help = not cur.flags & PARSE_OPT_NO_INTERNAL_HELP
    state = cur.state
    cur.opt = None
    while cur.rest:
        arg = cur.rest[0]
        cur.fake_arg = None
        if not arg.startswith("-") or len(arg) == 1:
            if cur.flags & PARSE_OPT_STOP_AT_NON_OPTION:
                break
            cur.out.append(arg)
            cur.rest.pop(0)
            continue

        if arg[1] != "-":
            cur.opt = arg[1:]
            if internal_help and cur.opt[0] == "h":
                raise _Help(usage_with_options_text(usages, opts))
            rc = _parse_short(cur, opts)
            if rc == _ERR:
                raise _Help(parse_options_usage_text(usages, opts, arg[1:], True))
            if rc == _UNKNOWN:
                return "unknown"
            if cur.opt is not None:
                _check_typos(state, arg[1:], opts)
            while cur.opt is not None:
                if internal_help and cur.opt[0] == "h":
                    raise _Help(usage_with_options_text(usages, opts))
                here = cur.opt
                rc = _parse_short(cur, opts)
                if rc == _ERR:
                    raise _Help(parse_options_usage_text(usages, opts, here, True))
                if rc == _UNKNOWN:
                    # the C code rewrites argv[0] as "-" + rest-of-bundle
                    cur.fake_arg = "-" + here
                    return "unknown"
            cur.rest.pop(0)
            continue

        if len(arg) == 2:  # "--"
            if not cur.flags & PARSE_OPT_KEEP_DASHDASH:
                cur.rest.pop(0)
            break
        name = arg[2:]
        if internal_help and name == "help-all":
            raise _Help(usage_with_options_text(usages, opts, full=True))
        if internal_help and name == "help":
            raise _Help(usage_with_options_text(usages, opts))
        if name == "list-opts":
            listing = "".join(f"--{o.long if o.long is not None else '(null)'} "
                              for o in opts)
            raise _Help("", listing, LIST_EXIT)
        if name == "list-cmds":
            listing = "".join(f"{s} " for s in subcommands or ())
            raise _Help("", listing, LIST_EXIT)
        rc = _parse_long(cur, name, opts)
        if rc == _ERR:
            raise _Help(parse_options_usage_text(usages, opts, name, False))
        if rc == _UNKNOWN:
            return "unknown"
        cur.rest.pop(0)
    return None


def parse_options(argv: Sequence[str], options: Sequence[Option],
                  usages: Sequence[str] | None, flags: int = 0, *,
                  values: dict[str, Any] | None = None,
                  prefix: str | None = None,
                  subcommands: Sequence[str] | None = None,
                  stderr: TextIO | None = None) -> Parsed:
    """Parse ``argv`` (``argv[0]`` is the command name) like ndctl does.

    ``values`` supplies initial values (C statics/initialisers); options
    whose ``dest`` is missing get the zero value of their type.  Returns
    ``Parsed(values, args)``.  Raises :class:`UsageError` (exit 129), or
    :class:`CommandExit` with exit 130 for ``--list-opts``/``--list-cmds``.
    Messages that callbacks emit with ``state.error()`` before a successful
    return are written to ``stderr`` (when given); on failure they lead the
    exception text.
    """
    opts = _table(options)
    vals: dict[str, Any] = dict(values or {})
    for o in opts:
        if o.dest and o.type in _DEFAULTS:
            vals.setdefault(o.dest, _DEFAULTS[o.type])
        if o.set_dest:
            vals.setdefault(o.set_dest, False)
    usage_lines = list(usages or [])
    if subcommands is not None and (not usage_lines or not usage_lines[0]):
        # parse_options_subcommand() builds this line (with "ndctl" even
        # when called from cxl/daxctl)
        line = f"ndctl {argv[0]} [<options>] {{{'|'.join(subcommands)}}}"
        usage_lines = [line] + usage_lines[1:]
    if flags & PARSE_OPT_KEEP_UNKNOWN and flags & PARSE_OPT_STOP_AT_NON_OPTION:
        raise CommandExit(DIE_EXIT, die_text(
            "STOP_AT_NON_OPTION and KEEP_UNKNOWN don't go together"))

    state = ParseState(vals, prefix)
    cur = _Cursor(argv, flags, state)
    while True:
        try:
            result = _step(cur, opts, usage_lines, subcommands)
        except _Help as h:
            pending = "".join(state.stderr)
            if h.code == LIST_EXIT:
                raise CommandExit(LIST_EXIT, pending, h.stdout) from None
            raise UsageError(pending + h.text) from None
        if result is None:
            break
        # unknown option or switch
        if flags & PARSE_OPT_KEEP_UNKNOWN:
            cur.out.append(cur.fake_arg or cur.rest[0])
            cur.rest.pop(0)
            cur.opt = None
            continue
        shown = cur.fake_arg or cur.rest[0]
        if shown[1:2] == "-":
            msg = error_text(f"unknown option `{shown[2:]}'")
        else:
            assert cur.opt
            msg = error_text(f"unknown switch `{cur.opt[0]}'")
        raise UsageError("".join(state.stderr) + msg +
                         usage_with_options_text(usage_lines, opts))
    if stderr is not None and state.stderr:
        stderr.write("".join(state.stderr))
    return Parsed(vals, cur.out + cur.rest)
