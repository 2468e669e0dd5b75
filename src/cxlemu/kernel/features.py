"""What each kernel version has: one table of ABI attributes and behaviours
that appeared (or went away) in a given release, with where that comes from.

Every profile-dependent rule of the kernel model asks this table
(``Kernel.has(name)``) instead of comparing version numbers in place, so the
attribute set of a profile (``[boot] kernel = "6.1"`` ...) can be read here in
one screen and checked against it (tests/kernel/test_features.py boots every
profile and compares what sysfs shows with this table).

Sources: ``Documentation/ABI/testing/sysfs-bus-cxl`` and ``sysfs-bus-nvdimm``
(the ``KernelVersion:`` of each attribute), otherwise the commit that changed
the behaviour and the first release that carries it.  Entries marked
*observed* come from running the real kernel (Debian's 6.1 under QEMU 7.2 with
ndctl 76.1) where no single commit explains the difference.
"""

from __future__ import annotations

from cxlemu.util.lazydc import dataclass


Version = tuple[int, int]


@dataclass(frozen=True)
class Feature:
    """A kernel behaviour and the releases that have it."""
    since: Version                 # first release that has it
    source: str                    # ABI document, commit or observation
    what: str                      # what a user sees
    until: Version | None = None   # first release that no longer has it

    def present(self, version: Version) -> bool:
        return version >= self.since and (self.until is None or version < self.until)


FEATURES: dict[str, Feature] = {
    # ---- CXL sysfs ABI (Documentation/ABI/testing/sysfs-bus-cxl, KernelVersion) ----------------
    "endpoint_cdat": Feature(
        (6, 0), "sysfs-bus-cxl endpointX/CDAT: v6.0 (cxl/port: Read CDAT table)",
        "endpointN/CDAT, the device's CDAT read over DOE (0400)"),
    "create_ram_region": Feature(
        (6, 3), "sysfs-bus-cxl decoderX.Y/create_ram_region: v6.3 (6e099264185d cxl/region: Add volatile "
                "region creation support)",
        "root decoders offer create_ram_region (ram regions can be created)"),
    "region_mode": Feature(
        (6, 3), "sysfs-bus-cxl regionZ/mode: v6.3", "regionN/mode"),
    "parent_dport": Feature(
        (6, 3), "sysfs-bus-cxl {port,endpoint}X/parent_dport: v6.3", "portN/parent_dport link"),
    "memdev_trigger_poison_list": Feature(
        (6, 4), "sysfs-bus-cxl memX/trigger_poison_list: v6.4", "memN/trigger_poison_list"),
    "root_decoder_qos_class": Feature(
        (6, 5), "sysfs-bus-cxl decoderX.Y/qos_class: v6.5", "root decoders' qos_class"),
    "memdev_security": Feature(
        (6, 5), "sysfs-bus-cxl memX/security/{state,sanitize,erase}: v6.5",
        "memN/security/ (state, sanitize, erase)"),
    "decoders_committed": Feature(
        (6, 7), "sysfs-bus-cxl portX/decoders_committed: v6.7", "portN/decoders_committed"),
    "memdev_qos_class": Feature(
        (6, 8), "sysfs-bus-cxl memX/{ram,pmem}/qos_class: v6.8", "memN/ram/qos_class, memN/pmem/qos_class"),
    "region_access_coordinates": Feature(
        (6, 9), "cxl/region: Calculate performance data for a region (v6.9)",
        "regionN/access0,access1 and CXL-derived node access attributes"),
    "memdev_debugfs_poison": Feature(
        (6, 5), "drivers/cxl/mem.c debugfs inject_poison/clear_poison (cxl/mem: Add debugfs attributes "
                "for poison inject and clear, v6.5; Documentation/ABI/testing/debugfs-cxl)",
        "/sys/kernel/debug/cxl/memN/inject_poison and clear_poison"),
    # ---- nvdimm ABI ---------------------------------------------------------------------------------
    "nvdimm_cxl_id_provider": Feature(
        (6, 2), "sysfs-bus-nvdimm nmemX/id: 6.2 ('cxl/pmem: add id attribute to CXL based nvdimm', "
                "with 'provider' in the same cxl/ group of drivers/cxl/pmem.c)",
        "nmemN/cxl/id and nmemN/cxl/provider"),
    "cxl_label_design": Feature(
        (6, 2), "cxlemu profile rule, observed on 6.1: 1.2 index blocks and an interleave-set cookie "
                "checked for CXL namespace labels; later profiles model the CXL (LSA 2.1) label design",
        "LSA 2.1 index blocks, region uuid in namespace labels, no cookie check for CXL labels"),
    "pmem_serial_zero_refused": Feature(
        (6, 15), "cxl/pmem: debug invalid serial number data (v6.15)",
        "a pmem region over a memdev with serial 0 is refused"),
    # ---- behaviour ------------------------------------------------------------------------------
    "hb_port_by_bridge_device": Feature(
        (6, 2), "cxl/ACPI: Register CXL host ports by bridge device (Robert Richter, merged for v6.2); "
                "observed on 6.1: dport ACPI0016:00 alias pci0000:0c, port host ACPI0016:00",
        "a host bridge's dport and port are the PCI root bridge (pci0000:BB), the ACPI0016 device "
        "is its alias; before, the other way round"),
    "region_invalidate_at_probe": Feature(
        (6, 2), "d18bc74aced6 cxl/region: Manage CPU caches relative to DPA invalidation events (v6.2)",
        "enabling (probing) a region fails with ENXIO under a hypervisor: 'Failed to synchronize CPU "
        "cache state'", until=(6, 5)),
    "region_invalidate_at_commit": Feature(
        (6, 5), "d1257d098a5a cxl/region: Move cache invalidation before region teardown, and before "
                "setup (v6.5; also in stable 6.3.13 and 6.4.4)",
        "committing (and resetting) a region fails with ENXIO under a hypervisor"),
    "cxl_dax_region": Feature(
        (6, 3), "drivers/dax/cxl.c (dax_cxl, v6.3)", "ram regions get a dax region (daxN.0)"),
    "dax_match_type": Feature(
        (6, 3), "dax: Assign RAM regions to memory-hotplug by default (v6.3, dax_match_type)",
        "a ram region's dax device binds to kmem"),
    "dax_memmap_on_memory": Feature(
        (6, 8), "dax: add a sysfs knob to control memmap_on_memory behavior (v6.8)",
        "daxX.Y/memmap_on_memory"),
    "adistance_hmat": Feature(
        (6, 7), "acpi, hmat: calculate abstract distance with HMAT (v6.7)",
        "memory tiers from HMAT performance"),
    "adistance_cxl": Feature(
        (6, 9), "cxl/region: cxl_region_calculate_adistance() (v6.9)",
        "memory tiers of CXL nodes from region performance"),
    "memory_block_advice": Feature(
        (6, 14), "mm: memory_block_advise_max_size() and the CFMWS advice (v6.14)",
        "the memory block size honours CFMWS alignment"),
    "bare_metal_max_block_size": Feature(
        (5, 8), "x86/mm: use max memory block size on bare metal (v5.8)",
        "bare-metal machines get the largest memory block size the memory allows"),
    "cxl_event_records": Feature(
        (6, 3), "6ebe28f9ec72 cxl/mem: Read, trace, and clear events on driver load; cxl/pci: Add "
                "(hopefully) all of the event interrupts (v6.3)",
        "cxl_pci sets the event interrupt policy, reads, traces (cxl_general_media, cxl_dram, "
        "cxl_memory_module ...) and clears the device's event logs"),
    "cxl_cper_events": Feature(
        (6, 9), "671a794c33c6 acpi/ghes: Process CXL Component Events (v6.9)",
        "with firmware-first error handling the event records the firmware reads reach the cxl "
        "trace events through CPER"),
    "node_memory_failure_stats": Feature(
        (6, 6), "44b8f8bf2438 mm: memory-failure: add memory failure stats to sysfs (v6.6)",
        "/sys/devices/system/node/nodeN/memory_failure/{total,ignored,failed,delayed,recovered}"),
    "dpa_mode_unset_ebusy": Feature(
        (6, 15), "cxl/hdm: allocating DPA with no mode set returns EBUSY (v6.15; EINVAL before)",
        "dpa_size write with mode 'none' fails with EBUSY"),
}


def feature(name: str) -> Feature:
    return FEATURES[name]


def has(version: Version, name: str) -> bool:
    """Does kernel ``version`` have feature ``name``? (KeyError for an unknown name.)"""
    return FEATURES[name].present(version)


def since(name: str) -> Version:
    return FEATURES[name].since


def table(version: Version) -> dict[str, bool]:
    """Every feature and whether ``version`` has it."""
    return {name: f.present(version) for name, f in FEATURES.items()}
