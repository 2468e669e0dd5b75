"""Loadable modules: which module each modelled driver lives in, and what
/sys/module/<name> shows (kernel/module/sysfs.c, drivers/base/module.c).

User space looks at /sys/module: libkmod (used by libdaxctl to make sure
device_dax or kmem is there before binding a dax device, and by libndctl)
treats a module whose ``initstate`` reads ``live`` as loaded and inserts
nothing.  The model's drivers are all "loaded" from boot, as on a distro
kernel that has probed CXL hardware.
"""

from __future__ import annotations

#: (bus, driver) -> module, as in Linux's Kbuild (drivers/cxl, drivers/nvdimm, drivers/dax)
DRIVER_MODULES: dict[tuple[str, str], str] = {
    ("platform", "cxl_acpi"): "cxl_acpi",
    ("platform", "cxl_mock_mem"): "cxl_mock_mem",
    ("pci", "cxl_pci"): "cxl_pci",
    ("cxl", "cxl_port"): "cxl_port",
    ("cxl", "cxl_mem"): "cxl_mem",
    ("cxl", "cxl_region"): "cxl_core",            # core/region.c is part of cxl_core
    ("cxl", "cxl_nvdimm_bridge"): "cxl_pmem",
    ("cxl", "cxl_nvdimm"): "cxl_pmem",
    ("cxl", "cxl_pmem_region"): "cxl_pmem",
    ("cxl", "cxl_dax_region"): "dax_cxl",
    ("nd", "nd_bus"): "libnvdimm",
    ("nd", "nvdimm"): "libnvdimm",
    ("nd", "nd_region"): "libnvdimm",
    ("nd", "nd_pmem"): "nd_pmem",
    ("nd", "dax_pmem"): "dax_pmem",
    ("dax", "device_dax"): "device_dax",
    ("dax", "kmem"): "kmem",
}

#: modules the driver modules depend on (loaded with them; no driver of their own here)
LIBRARY_MODULES = ("cxl_core", "libnvdimm", "dax", "nd_btt")


def module_of(bus: str, driver: str) -> str | None:
    return DRIVER_MODULES.get((bus, driver))


def loaded_modules(buses: dict) -> dict[str, list[tuple[str, str]]]:
    """module -> [(bus, driver)] for the drivers registered on ``buses``."""
    out: dict[str, list[tuple[str, str]]] = {}
    for bname, bus in buses.items():
        for dname in bus.drivers:
            mod = module_of(bname, dname)
            if mod is not None:
                out.setdefault(mod, []).append((bname, dname))
    if out:
        for lib in LIBRARY_MODULES:
            if lib in ("libnvdimm", "nd_btt") and "nd" not in buses:
                continue
            out.setdefault(lib, [])
    return out
