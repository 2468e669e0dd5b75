"""``cxlemu demo``: the seed's DEVDAX walkthrough on BiscuitOS topology B,
narrated as a console session, in a temporary machine.

It lists the topology, (re)creates a 512 MiB pmem region, makes a devdax
namespace, writes through /dev/dax0.0 and reads back, reboots, re-creates the
region as a user would, finds the namespace again from its labels and shows
that the data survived.
"""

from __future__ import annotations

import io
import os
import shlex
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

from cxlemu.machine.store import Store

MACHINE = "demo"
MESSAGE = b"Hello BiscuitOS on CXL Type3 PMEM (cxlemu)\n"


@contextmanager
def _home(keep: bool) -> Iterator[str]:
    old = os.environ.get("CXLEMU_HOME")
    d = tempfile.mkdtemp(prefix="cxlemu-demo-")
    os.environ["CXLEMU_HOME"] = d
    try:
        yield d
    finally:
        if old is None:
            os.environ.pop("CXLEMU_HOME", None)
        else:
            os.environ["CXLEMU_HOME"] = old
        if not keep:
            import shutil
            shutil.rmtree(d, ignore_errors=True)


class Console:
    def __init__(self, out) -> None:
        self.out = out

    def say(self, text: str) -> None:
        self.out.write(f"\n# {text}\n")

    def shell(self, argv: list[str]) -> int:
        """Run a bundled tool on the demo machine, printed like a shell session."""
        from cxlemu.tools.runner import run_tool
        self.out.write(f"root@biscuitos:~# {shlex.join(argv)}\n")
        out, err = io.StringIO(), io.StringIO()
        with Store().open(MACHINE) as m:
            rc = run_tool(argv[0], argv[1:], m.backend(), env={}, stdout=out, stderr=err, isatty=False)
        self.out.write(out.getvalue())
        self.out.write(err.getvalue())
        if rc:
            self.out.write(f"(exit status {rc})\n")
        return rc


def devdax_app(console: Console, write: bool) -> bytes:
    """The seed's example: open /dev/dax0.0, mmap, store, load."""
    from cxlemu.machine.dax import open_dax
    console.out.write("root@biscuitos:~# ./devdax_rw /dev/dax0.0\n")
    with open_dax(MACHINE, "dax0.0") as dax:
        buf = dax.buffer
        if write:
            buf[: len(MESSAGE)] = MESSAGE
            dax.persist(0, len(MESSAGE))
            console.out.write(f"write: {MESSAGE.decode().rstrip()}\n")
        data = bytes(buf[: len(MESSAGE)])
    console.out.write(f"read:  {data.decode(errors='replace').rstrip()}\n")
    return data


def run_demo(keep: bool = False, out=None) -> int:
    out = out or sys.stdout
    c = Console(out)
    t0 = time.perf_counter()
    with _home(keep) as home:
        Store().create(MACHINE, _preset())
        c.say("BiscuitOS CXL topology B: root port -> CXL switch -> 512 MiB Type 3 PMEM device")
        c.shell(["cxl", "list", "-v"])
        c.say("start from a clean bus, then build a 512 MiB pmem region on decoder0.0")
        c.shell(["cxl", "destroy-region", "-f", "all"])
        if c.shell(["cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M", "-t", "pmem",
                    "-w", "1", "-g", "4096", "-u"]):
            return 1
        c.shell(["cxl", "enable-region", "region0"])
        c.say("hand the region to libnvdimm and carve a device-DAX namespace")
        c.shell(["ndctl", "destroy-namespace", "--force", "all"])
        c.shell(["ndctl", "enable-region", "region0"])
        if c.shell(["ndctl", "create-namespace", "--mode=dax", "-f"]):
            return 1
        c.shell(["daxctl", "list", "-u"])
        c.say("the example application maps /dev/dax0.0, stores and loads")
        devdax_app(c, write=True)
        c.say("reboot: decoders reset, the persistent media and the labels survive")
        with Store().open(MACHINE) as m:
            m.reboot()
        out.write("root@biscuitos:~# reboot\n")
        c.shell(["cxl", "list", "-R"])
        c.say("re-create the region with the same parameters: the namespace returns from its labels")
        c.shell(["cxl", "create-region", "-d", "decoder0.0", "-m", "mem0", "-s", "512M", "-t", "pmem",
                 "-w", "1", "-g", "4096"])
        c.shell(["ndctl", "list", "-N", "-u"])
        data = devdax_app(c, write=False)
        ok = data == MESSAGE
        c.say(f"the data {'survived the reboot' if ok else 'DID NOT survive the reboot'} "
              f"({time.perf_counter() - t0:.1f} s)")
        if keep:
            out.write(f"# the machine is kept: CXLEMU_HOME={home} cxlemu shell {MACHINE}\n")
        return 0 if ok else 1


def _preset() -> str:
    from cxlemu.topology import presets
    return presets.text("biscuitos-b")
