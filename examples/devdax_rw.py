"""The seed's example application, in Python: open /dev/dax0.0 of a cxlemu
machine, map it, store a string, load it back and print it.

    python examples/devdax_rw.py MACHINE [DEV] [--message TEXT] [--persist] [--read]

The C original (BiscuitOS-CXL-DEVDAX) opens the device, mmap()s it with
MAP_SHARED, sprintf()s into the mapping and printf()s it back.  Like that
program, this one does not flush by default: the store sits in the CPU
cache, survives an orderly ``cxlemu reboot`` (caches are written back) and
is lost on ``cxlemu power-fail`` (unless the platform has eADR).  Pass
``--persist`` to clwb + sfence the line, which makes it survive both.
``--read`` only loads and prints.
"""

from __future__ import annotations

import argparse
import sys

from cxlemu.data.dax_mapping import DaxDevice
from cxlemu.machine.store import Store

DEFAULT_MESSAGE = "Hello BiscuitOS on CXL Type3 PMEM"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("machine")
    ap.add_argument("dev", nargs="?", default="/dev/dax0.0")
    ap.add_argument("--message", default=DEFAULT_MESSAGE)
    ap.add_argument("--persist", action="store_true", help="clwb + sfence after the store")
    ap.add_argument("--read", action="store_true", help="only load and print")
    args = ap.parse_args(argv)
    with Store().open(args.machine) as m:
        try:
            dev = DaxDevice.open(m.backend(), args.dev)
        except OSError as e:
            print(f"open {args.dev}: {e.strerror}", file=sys.stderr)
            return 1
        mem = dev.mmap(dev.align)                 # one mapping unit, like MAP_SIZE in the C program
        try:
            if not args.read:
                data = args.message.encode() + b"\0"
                mem.buffer[:len(data)] = data         # sprintf(mem, ...)
                if args.persist:
                    mem.persist(0, len(data))
            raw = bytes(mem.buffer[:4096]).split(b"\0", 1)[0]
            print(raw.decode(errors="replace"))      # printf("%s\n", mem)
        finally:
            mem.close()                           # munmap
    return 0


if __name__ == "__main__":
    sys.exit(main())
