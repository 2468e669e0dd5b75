"""What the label commands of cxl (cxl/memdev.c) and ndctl (ndctl/dimm.c)
share: the ``-s/--size`` and ``-O/--offset`` options and the data files
(``-o`` opened "w+b", else stdout as bytes; ``-i`` opened "rb", else
stdin)."""

from __future__ import annotations

import os
import sys
from typing import Callable, TextIO

from cxlemu.tools.common.parse_options import OPT_UINTEGER

__all__ = ["label_options", "TextBytes", "open_label_files"]


def label_options() -> list:
    return [OPT_UINTEGER("s", "size", "len", "number of label bytes to operate"),
            OPT_UINTEGER("O", "offset", "offset", "offset into the label area to start operation")]


class TextBytes:
    """A text stream written with bytes (latin-1, byte for character)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, b: bytes) -> None:
        self.stream.write(b.decode("latin-1"))

    def close(self) -> None:
        """The stream stays open."""


#: kind -> (state key, option, open mode)
_FILES = {"read": ("out", "outfile", "w+b"), "write": ("in", "infile", "rb")}


def open_label_files(kind: str, prm: dict, stdout: TextIO, state: dict, report: Callable[[str], None]) -> int:
    """Put the output (read) or input (write) file in ``state["out"]`` /
    ``state["in"]``; 0, or -errno after ``report("failed to open: ...")``."""
    if kind not in _FILES:
        return 0
    key, option, mode = _FILES[kind]
    name = prm.get(option)
    if not name:
        state[key] = (getattr(stdout, "buffer", None) or TextBytes(stdout)) if kind == "read" else sys.stdin.buffer
        return 0
    try:
        state[key] = open(name, mode)
    except OSError as e:
        report(f"failed to open: {name}: ({os.strerror(e.errno)})")
        return -e.errno
    return 0
