"""A Python libcxl: the CXL topology as ndctl's libcxl (v81) discovers it,
read and written only through a sysfs backend (``cxlemu.sysfs.backend``).

Modules (one job each):

* :mod:`.cnum` — C conversions (strtoull/strtoul/atoi/sscanf) of sysfs text;
* :mod:`.sysfs` — attribute reads/writes, directory scans, bind/unbind;
* :mod:`.context` — :class:`CxlContext`, the buses and memdevs lists;
* :mod:`.device` — what the sysfs-backed objects share (name, enabled,
  bind/unbind checks);
* :mod:`.port` — :class:`Port` / :class:`Bus` / :class:`Endpoint` / :class:`Dport`;
* :mod:`.memdev` — :class:`Memdev`;
* :mod:`.decoder` — :class:`Decoder` / :class:`Target`, region creation;
* :mod:`.region` — :class:`Region` / :class:`Mapping` and their setters;
* :mod:`.mailbox` — the ``/dev/cxl/memN`` command path.

The DAX regions below CXL regions (``cxl list -X``, ``disable-region``)
come from :mod:`cxlemu.tools.libdaxctl` (``CxlContext.dax``).

Typical use::

    ctx = CxlContext(backend, env, stderr)
    for bus in ctx.buses():
        for port in bus.iter_all(): ...
    dec = ctx.decoder_by_name("decoder0.0")
    region = dec.create_pmem_region()
"""

from .context import CxlContext
from .decoder import Decoder, DecoderMode, Target, TargetType, mode_from_ident, mode_name
from .mailbox import CommandError, MemdevMailbox
from .memdev import CXL_QOS_CLASS_NONE, Memdev
from .port import Bus, Dport, Endpoint, Port, PortType
from .region import DecodeState, Mapping, Region

__all__ = [
    "CxlContext", "Bus", "Port", "Endpoint", "Dport", "PortType", "Memdev",
    "Decoder", "DecoderMode", "Target", "TargetType", "Region", "Mapping",
    "DecodeState", "MemdevMailbox", "CommandError", "CXL_QOS_CLASS_NONE",
    "mode_name", "mode_from_ident",
]
