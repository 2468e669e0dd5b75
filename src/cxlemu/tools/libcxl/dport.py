"""What a dport and a decoder target have in common (cxl/lib/libcxl.c
cxl_dport_maps_memdev, cxl_target_maps_memdev): the paths of a downstream
port link."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .device import devname_of

if TYPE_CHECKING:
    from .memdev import Memdev


class DportLink:
    """What a dport and a decoder target (a dport named by ``target_list``)
    share: ``dev_path`` (realpath of the dport link), ``phys_path`` (realpath
    of its ``physical_node``, or ``dev_path`` when only a ``firmware_node``
    exists) and ``fw_path`` (realpath of ``firmware_node``)."""

    dev_path: str
    phys_path: str | None
    fw_path: str | None

    @property
    def devname(self) -> str:
        return devname_of(self.dev_path)

    @property
    def physical_node(self) -> str | None:
        return devname_of(self.phys_path) if self.phys_path else None

    @property
    def firmware_node(self) -> str | None:
        return devname_of(self.fw_path) if self.fw_path else None

    def maps_memdev(self, memdev: "Memdev") -> bool:
        """``cxl_dport_maps_memdev()`` / ``cxl_target_maps_memdev()``:
        substring match on host paths."""
        return (self.phys_path or self.dev_path) in memdev.host_path
