"""cxlemu: a complete CXL memory system in software.

Layers (see docs/architecture.md):
  hw/      emulated hardware and platform firmware
  kernel/  a model of Linux's CXL memory stack (device model, cxl, nvdimm, dax, mm)
  sysfs/   the kernel's sysfs ABI as an in-process filesystem, renderable to a directory
  tools/   cxl, ndctl, daxctl, numactl, lspci, dd on a sysfs backend
  data/    the data path: HPA-addressed bulk access and dax mappings
  machine/ persistent machines under $CXLEMU_HOME, the machine process, the state format

The Python API (docs/python.md), imported on first use::

    import cxlemu
    m = cxlemu.create("box", topology="biscuitos-b")     # or cxlemu.open("box")
    m.run_tool("cxl", "list", "-M")
"""

from cxlemu._version import __version__

_API = ("create", "open", "machines", "Machine", "CommandError", "ToolError")
# Lazily imported sub-APIs: ``cxlemu.workloads.Zipf(rss="8G", alpha=0.99)``
# (the built-in workload generators, userspace/workloads) is usable after a
# bare ``import cxlemu`` without importing numpy until it is touched.
_LAZY = {"workloads": "cxlemu.userspace.workloads"}


def __getattr__(name: str):
    """cxlemu.create / cxlemu.open / cxlemu.workloads ...: imported only when used."""
    if name in _API:
        from cxlemu import api
        return getattr(api, name)
    if name in _LAZY:
        import importlib
        mod = importlib.import_module(_LAZY[name])
        globals()[name] = mod
        return mod
    raise AttributeError(f"module 'cxlemu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API) + list(_LAZY))
