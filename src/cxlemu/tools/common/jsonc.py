"""Serialise Python values exactly as json-c 0.16's
``json_object_to_json_string_ext()`` does, and display them the way ndctl's
``util_display_json_array()`` (util/json.c) does.

Rules (checked against the installed libjson-c.so.5, json-c 0.16, through
ctypes in tests/tools/test_jsonc.py):

* PRETTY: one member per line, 2-space indent per level, ``"key":value``
  (no space after the colon).  An empty array/object prints as ``[`` newline
  ``<indent>]``.  SPACED alone: ``{ "a": 1, "b": [ 1 ] }``, empty ``[ ]``.
  PRETTY|SPACED: pretty layout with ``": "``.  PLAIN: ``{"a":1}``.
* Strings and keys: ``"`` ``\\`` ``/`` and \\b \\f \\n \\r \\t get a backslash
  escape (``/`` unless NOSLASHESCAPE), other bytes below 0x20 become
  ``\\u00xx`` (lower-case hex); DEL and non-ASCII bytes pass through raw.
* Integers print in decimal.  json-c keeps int64 and uint64 separately;
  here any Python int in [-2**63, 2**64) is printed as is.  Use
  :func:`as_int64` to get the wrap-around a C ``json_object_new_int64()``
  of an unsigned value would give.
* Doubles: ``%.17g``, plus ``.0`` when the result has neither ``.`` nor
  ``e``; NaN/Infinity/-Infinity as bare words.  NOZERO trims trailing
  zeros after the decimal point (with json-c's own quirks).
* ``None`` is ``null``; booleans are ``true``/``false``.
* Objects with a ``__jsonc__(level, flags) -> str`` method provide their
  own text (the equivalent of ``json_object_set_serializer()``);
  :class:`RawJSON` inserts fixed text.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Mapping

from .parse_options import warning_text

__all__ = [
    "JSON_C_TO_STRING_PLAIN", "JSON_C_TO_STRING_SPACED",
    "JSON_C_TO_STRING_PRETTY", "JSON_C_TO_STRING_NOZERO",
    "JSON_C_TO_STRING_PRETTY_TAB", "JSON_C_TO_STRING_NOSLASHESCAPE",
    "RawJSON", "dumps", "escape_str", "as_int64", "as_uint64",
    "display_json", "NO_MATCH_WARNING",
]

JSON_C_TO_STRING_PLAIN = 0
JSON_C_TO_STRING_SPACED = 1 << 0
JSON_C_TO_STRING_PRETTY = 1 << 1
JSON_C_TO_STRING_NOZERO = 1 << 2
JSON_C_TO_STRING_PRETTY_TAB = 1 << 3
JSON_C_TO_STRING_NOSLASHESCAPE = 1 << 4

# util/json.h UTIL_JSON_HUMAN; kept local to avoid an import cycle with
# util_json (a test asserts both agree).
_UTIL_JSON_HUMAN = 1 << 4

INT64_MIN = -(1 << 63)
UINT64_MAX = (1 << 64) - 1


class RawJSON:
    """Pre-rendered JSON text inserted verbatim."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __jsonc__(self, level: int, flags: int) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"RawJSON({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJSON) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def as_int64(v: int) -> int:
    """Two's-complement view of ``v`` as int64 (``json_object_new_int64``)."""
    v &= UINT64_MAX
    return v - (1 << 64) if v >> 63 else v


def as_uint64(v: int) -> int:
    """``v`` reduced modulo 2**64 (``json_object_new_uint64``)."""
    return v & UINT64_MAX


_ESCAPES: dict[int, str] = {c: f"\\u00{c:02x}" for c in range(0x20)}
_ESCAPES.update({
    ord("\b"): "\\b", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
    ord("\f"): "\\f", ord('"'): '\\"', ord("\\"): "\\\\", ord("/"): "\\/",
})
_ESCAPES_NOSLASH = {k: v for k, v in _ESCAPES.items() if k != ord("/")}


def escape_str(s: str, flags: int = 0) -> str:
    """json-c ``json_escape_str()`` on a Python string (no quotes added)."""
    table = _ESCAPES_NOSLASH if flags & JSON_C_TO_STRING_NOSLASHESCAPE else _ESCAPES
    return s.translate(table)


def _double(d: float, flags: int) -> str:
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "Infinity" if d > 0 else "-Infinity"
    text = "%.17g" % d
    dot = text.find(".")
    looks_numeric = text[:1].isdigit() or (len(text) > 1 and text[0] == "-" and text[1].isdigit())
    if looks_numeric and dot < 0 and "e" not in text:
        text += ".0"
    if dot >= 0 and flags & JSON_C_TO_STRING_NOZERO:
        # keep up to the last non-'0' character after the '.', at least one
        frac = text[dot + 1:]
        keep = 0
        for i, ch in enumerate(frac):
            if ch != "0":
                keep = i
        text = text[: dot + 1 + keep + 1]
    return text


def _indent(level: int, flags: int) -> str:
    if not flags & JSON_C_TO_STRING_PRETTY:
        return ""
    if flags & JSON_C_TO_STRING_PRETTY_TAB:
        return "\t" * level
    return "  " * level


def _container(items: list[tuple[str | None, Any]], open_: str, close: str,
               level: int, flags: int, out: list[str]) -> None:
    pretty = bool(flags & JSON_C_TO_STRING_PRETTY)
    spaced = bool(flags & JSON_C_TO_STRING_SPACED)
    out.append(open_)
    if pretty:
        out.append("\n")
    inner = _indent(level + 1, flags)
    sep = '": ' if spaced else '":'
    for n, (key, val) in enumerate(items):
        if n:
            out.append(",\n" if pretty else ",")
        if spaced and not pretty:
            out.append(" ")
        out.append(inner)
        if key is not None:
            out.append('"')
            out.append(escape_str(key, flags))
            out.append(sep)
        _emit(val, level + 1, flags, out)
    if pretty:
        if items:
            out.append("\n")
        out.append(_indent(level, flags))
    out.append(" " + close if spaced and not pretty else close)


def _emit(obj: Any, level: int, flags: int, out: list[str]) -> None:
    hook = getattr(obj, "__jsonc__", None)
    if hook is not None and not isinstance(obj, type):
        out.append(hook(level, flags))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append('"')
        out.append(escape_str(obj, flags))
        out.append('"')
    elif isinstance(obj, int) or (hasattr(obj, "__index__") and not isinstance(obj, float)):
        value = operator.index(obj)
        if not INT64_MIN <= value <= UINT64_MAX:
            raise ValueError(f"integer out of json-c range: {value}")
        out.append(str(value))
    elif isinstance(obj, float):
        out.append(_double(obj, flags))
    elif isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"json-c object keys must be str, not {type(k).__name__}")
            items.append((k, v))
        _container(items, "{", "}", level, flags, out)
    elif isinstance(obj, (list, tuple)):
        _container([(None, v) for v in obj], "[", "]", level, flags, out)
    else:
        raise TypeError(f"cannot serialise {type(obj).__name__} as json-c")


def _dumps_pretty(obj: Any) -> str:
    """``dumps(obj, JSON_C_TO_STRING_PRETTY)`` (what every listing prints), with
    exact ``dict``/``list``/``str``/``int`` values laid out inline and the
    escaped form of each distinct key or string computed once; anything else
    (None, booleans, floats, tuples, subclasses, ``__jsonc__`` objects) goes
    through :func:`_emit`, so the text is the same."""
    out: list[str] = []
    append = out.append
    quoted: dict[str, str] = {}
    indents = ["  " * n for n in range(8)]

    def q(text: str) -> str:
        r = quoted.get(text)
        if r is None:
            r = quoted[text] = '"' + text.translate(_ESCAPES) + '"'
        return r

    def emit(o: Any, level: int) -> None:
        t = type(o)
        if t is str:
            append(q(o))
        elif t is int:
            if not INT64_MIN <= o <= UINT64_MAX:
                raise ValueError(f"integer out of json-c range: {o}")
            append(str(o))
        elif t is dict or t is list:
            while len(indents) <= level + 1:
                indents.append("  " * len(indents))
            inner, close = indents[level + 1], indents[level]
            if t is dict:
                append("{\n")
                first = True
                for k, v in o.items():
                    if type(k) is not str:
                        if not isinstance(k, str):
                            raise TypeError(f"json-c object keys must be str, not {type(k).__name__}")
                    if first:
                        first = False
                        append(inner)
                    else:
                        append(",\n" + inner)
                    append(q(k)[:-1] + '":')
                    emit(v, level + 1)
                append(close + "}" if first else "\n" + close + "}")
            else:
                append("[\n")
                for n, v in enumerate(o):
                    append(",\n" + inner if n else inner)
                    emit(v, level + 1)
                append("\n" + close + "]" if o else close + "]")
        else:
            _emit(o, level, JSON_C_TO_STRING_PRETTY, out)

    emit(obj, 0)
    return "".join(out)


def dumps(obj: Any, flags: int = JSON_C_TO_STRING_PRETTY) -> str:
    """``json_object_to_json_string_ext(obj, flags)``.

    Note the default here is PRETTY (what every ndctl tool uses); json-c's
    own ``json_object_to_json_string()`` default is SPACED.
    """
    if flags == JSON_C_TO_STRING_PRETTY:
        return _dumps_pretty(obj)
    out: list[str] = []
    _emit(obj, 0, flags, out)
    return "".join(out)


NO_MATCH_WARNING = warning_text("no matching devices found\n")


def display_json(array: list[Any], flags: int = 0) -> tuple[str, str]:
    """``util_display_json_array()``: returns ``(stdout_text, stderr_text)``.

    * more than one element, or not human: the array, pretty-printed,
      plus a newline; an empty array also warns on stderr
      (``"  Warning: no matching devices found\\n\\n"``);
    * exactly one element with UTIL_JSON_HUMAN: the bare element;
    * no element with UTIL_JSON_HUMAN: nothing at all.
    """
    n = len(array)
    human = bool(flags & _UTIL_JSON_HUMAN)
    if n > 1 or not human:
        err = NO_MATCH_WARNING if n == 0 else ""
        return dumps(array, JSON_C_TO_STRING_PRETTY) + "\n", err
    if n == 1:
        return dumps(array[0], JSON_C_TO_STRING_PRETTY) + "\n", ""
    return "", ""
