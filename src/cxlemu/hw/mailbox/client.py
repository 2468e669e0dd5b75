"""Client-side mailbox helpers, the way libcxl's ``cxl_cmd_*`` API is used.

Everything is written against :class:`Channel`: ``send(cmd_id, payload_in,
out_size) -> (retval, payload_out)`` where ``cmd_id`` is a UAPI
``CXL_MEM_COMMAND_ID_*``, ``retval`` the device's mailbox return code and
transport failures are raised as ``OSError(errno)`` (that is what
:class:`cxlemu.hw.mailbox.uapi.RealMemdevChannel` does; an in-process fake
kernel can do the same).  A non-zero ``retval`` raises :class:`MailboxError`.

Behaviour taken from ndctl ``cxl/lib/libcxl.c``:

* fixed-size commands are sent with the kernel's advertised ``size_out``;
* label reads/writes are split in chunks of ``payload_max - 8`` bytes (the
  Set LSA header size), for reads too, like libcxl's lsa_op();
* Set Partition Info carries the volatile size in 256 MiB units.

The poison-list walk follows drivers/cxl/core/mbox.c cxl_mem_get_poison():
the same request is repeated while the device sets the MORE flag.
"""

from __future__ import annotations

import errno
from typing import Protocol

from .opcodes import (
    VARIABLE,
    CxlMemCommandId,
    command_spec,
    errno_for_return_code,
    return_code_name,
)
from .payloads import (

    AlertConfig,
    FwInfo,
    GetPoisonListInput,
    GetPoisonListOutput,
    GetLsaInput,
    HealthInfo,
    IdentifyMemoryDevice,
    PartitionInfo,
    PoisonFlags,
    PoisonRecord,
    SetAlertConfig,
    SetLsaInput,
    SetPartitionInfo,
)
from cxlemu.util.lazydc import dataclass

#: A common mailbox payload size (the kernel's payload_max for many devices).
DEFAULT_PAYLOAD_MAX = 4096


class Channel(Protocol):
    """Minimal transport to a memdev's mailbox (see module docstring)."""

    def send(self, cmd_id: int, payload_in: bytes, out_size: int) -> tuple[int, bytes]: ...


class MailboxError(Exception):
    """The device completed a command with a non-zero mailbox return code."""

    def __init__(self, retval: int, name: str | None = None, *, command: str | None = None):
        self.retval = retval
        self.name = name if name is not None else return_code_name(retval)
        self.command = command
        where = f"{command}: " if command else ""
        super().__init__(f"{where}mailbox return code {retval:#x} ({self.name})")

    @property
    def errno(self) -> int:
        """The errno the kernel would turn this return code into."""
        return errno_for_return_code(self.retval)


def _call(ch: Channel, cmd_id: CxlMemCommandId, payload_in: bytes = b"",
          out_size: int | None = None) -> bytes:
    spec = command_spec(cmd_id)
    if out_size is None:
        out_size = 0 if spec.size_out == VARIABLE else spec.size_out
    retval, out = ch.send(int(cmd_id), payload_in, out_size)
    if retval != 0:
        raise MailboxError(retval, command=spec.name)
    return out


def _fixed(ch: Channel, cmd_id: CxlMemCommandId) -> bytes:
    """Send a no-input command and return exactly its advertised output size."""
    out = _call(ch, cmd_id)
    size = command_spec(cmd_id).size_out
    if len(out) < size:
        raise OSError(errno.EIO, f"{command_spec(cmd_id).name}: short output "
                      f"({len(out)} < {size} bytes)")
    return out[:size]


def identify(ch: Channel) -> IdentifyMemoryDevice:
    """IDENTIFY (opcode 4000h)."""
    return IdentifyMemoryDevice.decode(_fixed(ch, CxlMemCommandId.IDENTIFY))


def get_partition_info(ch: Channel) -> PartitionInfo:
    """GET_PARTITION_INFO (opcode 4100h)."""
    return PartitionInfo.decode(_fixed(ch, CxlMemCommandId.GET_PARTITION_INFO))


def set_partition_info(ch: Channel, volatile_bytes: int, flags: int = 0) -> None:
    """SET_PARTITION_INFO (opcode 4101h); ``volatile_bytes`` must be 256 MiB aligned."""
    payload = SetPartitionInfo(volatile_bytes, flags).encode()
    _call(ch, CxlMemCommandId.SET_PARTITION_INFO, payload, 0)


def _lsa_chunk(payload_max: int) -> int:
    if payload_max < 0:
        raise ValueError("payload_max is unknown (negative)")
    chunk = payload_max - SetLsaInput.HEADER_SIZE
    if chunk <= 0:
        raise ValueError(f"payload_max {payload_max} leaves no room for label data")
    return chunk


def read_lsa(ch: Channel, offset: int, length: int, payload_max: int) -> bytes:
    """Read ``length`` label bytes at ``offset`` with GET_LSA (opcode 4102h)."""
    if length == 0:
        return b""
    chunk = _lsa_chunk(payload_max)
    parts: list[bytes] = []
    done = 0
    while done < length:
        n = min(chunk, length - done)
        out = _call(ch, CxlMemCommandId.GET_LSA, GetLsaInput(offset + done, n).encode(), n)
        if len(out) < n:
            raise OSError(errno.EIO, f"Get LSA returned {len(out)} of {n} bytes")
        parts.append(out[:n])
        done += n
    return b"".join(parts)


def write_lsa(ch: Channel, offset: int, data: bytes, payload_max: int) -> None:
    """Write ``data`` at label ``offset`` with SET_LSA (opcode 4103h)."""
    if not data:
        return
    chunk = _lsa_chunk(payload_max)
    view = memoryview(bytes(data))
    for start in range(0, len(view), chunk):
        piece = bytes(view[start:start + chunk])
        _call(ch, CxlMemCommandId.SET_LSA, SetLsaInput(offset + start, piece).encode(), 0)


def get_health_info(ch: Channel) -> HealthInfo:
    """GET_HEALTH_INFO (opcode 4200h)."""
    return HealthInfo.decode(_fixed(ch, CxlMemCommandId.GET_HEALTH_INFO))


def get_alert_config(ch: Channel) -> AlertConfig:
    """GET_ALERT_CONFIG (opcode 4201h)."""
    return AlertConfig.decode(_fixed(ch, CxlMemCommandId.GET_ALERT_CONFIG))


def set_alert_config(ch: Channel, config: SetAlertConfig) -> None:
    """SET_ALERT_CONFIG (opcode 4202h)."""
    _call(ch, CxlMemCommandId.SET_ALERT_CONFIG, config.encode(), 0)


def get_fw_info(ch: Channel) -> FwInfo:
    """GET_FW_INFO (opcode 0200h)."""
    return FwInfo.decode(_fixed(ch, CxlMemCommandId.GET_FW_INFO))


@dataclass(frozen=True, slots=True)
class PoisonList:
    """Records collected over all MORE-chained Get Poison List responses."""

    records: tuple[PoisonRecord, ...]
    overflow: bool = False
    overflow_timestamp: int = 0
    scanning: bool = False
    responses: int = 0  # how many mailbox round trips it took


def get_poison_list(ch: Channel, start: int, length: int, *,
                    payload_max: int = DEFAULT_PAYLOAD_MAX,
                    max_records: int | None = None) -> PoisonList:
    """GET_POISON (opcode 4300h) for DPA range [start, start+length).

    Repeats the identical request while the response has MORE set.  Like the
    kernel it stops early once ``max_records`` (the device's "Poison List
    Maximum Media Error Records") have been seen, and it also stops if a MORE
    response carries no records, so a device that never clears MORE cannot
    loop forever.
    """
    request = GetPoisonListInput(start, length).encode()
    records: list[PoisonRecord] = []
    overflow = scanning = False
    overflow_ts = 0
    responses = 0
    while True:
        out = GetPoisonListOutput.decode(
            _call(ch, CxlMemCommandId.GET_POISON, request, payload_max))
        responses += 1
        records.extend(out.records)
        if out.flags & PoisonFlags.OVERFLOW:
            overflow, overflow_ts = True, out.overflow_timestamp
        scanning = scanning or out.scanning
        if not out.more or not out.records:
            break
        if max_records is not None and len(records) >= max_records:
            break
    return PoisonList(tuple(records), overflow, overflow_ts, scanning, responses)
