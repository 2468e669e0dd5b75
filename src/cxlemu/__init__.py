"""cxlemu: a complete CXL memory system in software.

Layers (see docs/architecture.md):
  hw/      emulated hardware and platform firmware
  kernel/  a model of Linux's CXL memory stack (device model, cxl, nvdimm, dax, mm)
  sysfs/   the kernel's sysfs ABI as an in-process filesystem, renderable to a directory
  tools/   cxl, ndctl, daxctl, numactl, lspci, dd on a sysfs backend
  data/    the data path: HPA-addressed bulk access and dax mappings
  machine/ persistent machines under $CXLEMU_HOME
"""

__version__ = "0.1.0"
