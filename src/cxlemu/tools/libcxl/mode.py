"""Decoder modes and target types (cxl/libcxl.h enum cxl_decoder_mode,
cxl_decoder_mode_name(), cxl_decoder_mode_from_ident())."""

from __future__ import annotations

import enum


class DecoderMode(enum.IntEnum):
    """``enum cxl_decoder_mode`` (cxl/libcxl.h)."""

    NONE = 0
    MIXED = 1
    PMEM = 2
    RAM = 3


class TargetType(enum.IntEnum):
    UNKNOWN = 0
    EXPANDER = 1
    ACCELERATOR = 2


_MODE_NAMES = {DecoderMode.NONE: "none", DecoderMode.MIXED: "mixed",
               DecoderMode.PMEM: "pmem", DecoderMode.RAM: "ram"}


def mode_name(mode: int) -> str:
    """``cxl_decoder_mode_name()``; out-of-range values name "none"."""
    try:
        return _MODE_NAMES[DecoderMode(mode)]
    except ValueError:
        return "none"


def mode_from_ident(ident: str) -> DecoderMode:
    """``cxl_decoder_mode_from_ident()`` (regions and the tools): "ram",
    "volatile" -> RAM, "pmem" -> PMEM, anything else NONE."""
    if ident in ("ram", "volatile"):
        return DecoderMode.RAM
    if ident == "pmem":
        return DecoderMode.PMEM
    return DecoderMode.NONE
