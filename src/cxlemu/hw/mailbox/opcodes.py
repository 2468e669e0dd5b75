"""Mailbox command opcodes, Linux UAPI command ids and return codes.

Sources (facts only, no code copied):

* Opcodes: CXL spec r3.1 §8.2.9 / r3.2 §8.2.10, "Command Opcodes" tables
  (generic component command sets 00xxh-06xxh; memory device command sets
  40xxh-48xxh, r3.2 Table 8-141 "CXL Defined Memory Device Command Opcodes").
  Cross-checked against the ``enum cxl_opcode`` values in the kernel's
  ``drivers/cxl/cxlmem.h``.
* UAPI command ids: ``include/uapi/linux/cxl_mem.h`` (the ``CXL_CMDS`` list;
  new ids are only ever appended).  GET_POISON, INJECT_POISON, CLEAR_POISON,
  SCAN_MEDIA and GET_SCAN_MEDIA are "deprecated" ids in current kernels: the
  numbers stay reserved but the kernel no longer offers them to userspace.
* Fixed payload sizes advertised by the kernel: the ``cxl_mem_commands[]``
  table in ``drivers/cxl/core/mbox.c`` (``~0`` there is shown as ``-1`` here,
  which is how libcxl reads the ``__s32``-typed field).  Sizes of the
  deprecated ids come from the older kernels that still listed them.
* Return codes: CXL spec r3.1 Table 8-34 "Command Return Codes" (r2.0 Table
  150 for 00h-16h), errno mapping from ``CMD_CMD_RC_TABLE`` /
  ``cxl_mbox_cmd_rc2errno()`` in ``drivers/cxl/cxlmem.h``.
"""

from __future__ import annotations

import errno
from enum import IntEnum
from types import MappingProxyType
from typing import Mapping

from cxlemu.util.lazydc import dataclass

#: ``size_in``/``size_out`` value meaning "variable length" (kernel ``~0U``).
VARIABLE = -1


class Opcode(IntEnum):
    """16-bit mailbox opcodes: command set in bits 15:8, command in 7:0."""

    # 00h Information and Status
    IDENTIFY = 0x0001
    BACKGROUND_OPERATION_STATUS = 0x0002
    GET_RESPONSE_MESSAGE_LIMIT = 0x0003
    SET_RESPONSE_MESSAGE_LIMIT = 0x0004
    REQUEST_ABORT_BACKGROUND_OPERATION = 0x0005
    # 01h Events
    GET_EVENT_RECORDS = 0x0100
    CLEAR_EVENT_RECORDS = 0x0101
    GET_EVENT_INTERRUPT_POLICY = 0x0102
    SET_EVENT_INTERRUPT_POLICY = 0x0103
    GET_MCTP_EVENT_INTERRUPT_POLICY = 0x0104
    SET_MCTP_EVENT_INTERRUPT_POLICY = 0x0105
    EVENT_NOTIFICATION = 0x0106
    # 02h Firmware Update
    GET_FW_INFO = 0x0200
    TRANSFER_FW = 0x0201
    ACTIVATE_FW = 0x0202
    # 03h Timestamp
    GET_TIMESTAMP = 0x0300
    SET_TIMESTAMP = 0x0301
    # 04h Logs
    GET_SUPPORTED_LOGS = 0x0400
    GET_LOG = 0x0401
    GET_LOG_CAPABILITIES = 0x0402
    CLEAR_LOG = 0x0403
    POPULATE_LOG = 0x0404
    GET_SUPPORTED_LOGS_SUB_LIST = 0x0405
    # 05h Features
    GET_SUPPORTED_FEATURES = 0x0500
    GET_FEATURE = 0x0501
    SET_FEATURE = 0x0502
    # 06h Maintenance
    PERFORM_MAINTENANCE = 0x0600
    # 40h Identify Memory Device
    IDENTIFY_MEMORY_DEVICE = 0x4000
    # 41h Capacity Configuration and Label Storage
    GET_PARTITION_INFO = 0x4100
    SET_PARTITION_INFO = 0x4101
    GET_LSA = 0x4102
    SET_LSA = 0x4103
    # 42h Health Information and Alerts
    GET_HEALTH_INFO = 0x4200
    GET_ALERT_CONFIG = 0x4201
    SET_ALERT_CONFIG = 0x4202
    GET_SHUTDOWN_STATE = 0x4203
    SET_SHUTDOWN_STATE = 0x4204
    # 43h Media and Poison Management
    GET_POISON_LIST = 0x4300
    INJECT_POISON = 0x4301
    CLEAR_POISON = 0x4302
    GET_SCAN_MEDIA_CAPABILITIES = 0x4303
    SCAN_MEDIA = 0x4304
    GET_SCAN_MEDIA_RESULTS = 0x4305
    # 44h Sanitize and Media Operations
    SANITIZE = 0x4400
    SECURE_ERASE = 0x4401
    MEDIA_OPERATIONS = 0x4402
    # 45h Persistent Memory Data-at-rest Security
    GET_SECURITY_STATE = 0x4500
    SET_PASSPHRASE = 0x4501
    DISABLE_PASSPHRASE = 0x4502
    UNLOCK = 0x4503
    FREEZE_SECURITY_STATE = 0x4504
    PASSPHRASE_SECURE_ERASE = 0x4505
    # 46h Security Passthrough
    SECURITY_SEND = 0x4600
    SECURITY_RECEIVE = 0x4601
    # 47h SLD QoS Telemetry
    GET_SLD_QOS_CONTROL = 0x4700
    SET_SLD_QOS_CONTROL = 0x4701
    GET_SLD_QOS_STATUS = 0x4702
    # 48h Dynamic Capacity
    GET_DC_CONFIG = 0x4800
    GET_DC_EXTENT_LIST = 0x4801
    ADD_DC_RESPONSE = 0x4802
    RELEASE_DC = 0x4803

    @property
    def command_set(self) -> int:
        return self.value >> 8

    @property
    def command(self) -> int:
        return self.value & 0xFF


# Command sets the kernel refuses to pass through the RAW command because
# they carry plaintext security material (drivers/cxl/core/mbox.c).
SECURITY_COMMAND_SETS: frozenset[int] = frozenset({0x44, 0x45, 0x46})


class CxlMemCommandId(IntEnum):
    """``CXL_MEM_COMMAND_ID_*`` (include/uapi/linux/cxl_mem.h), in UAPI order."""

    INVALID = 0
    IDENTIFY = 1
    RAW = 2
    GET_SUPPORTED_LOGS = 3
    GET_FW_INFO = 4
    GET_PARTITION_INFO = 5
    GET_LSA = 6
    GET_HEALTH_INFO = 7
    GET_LOG = 8
    SET_PARTITION_INFO = 9
    SET_LSA = 10
    GET_ALERT_CONFIG = 11
    SET_ALERT_CONFIG = 12
    GET_SHUTDOWN_STATE = 13
    SET_SHUTDOWN_STATE = 14
    GET_POISON = 15  # CXL_MEM_DEPRECATED_ID_GET_POISON in recent kernels
    INJECT_POISON = 16  # deprecated id
    CLEAR_POISON = 17  # deprecated id
    GET_SCAN_MEDIA_CAPS = 18
    SCAN_MEDIA = 19  # deprecated id
    GET_SCAN_MEDIA = 20  # deprecated id
    GET_TIMESTAMP = 21
    GET_LOG_CAPS = 22
    CLEAR_LOG = 23
    GET_SUP_LOG_SUBLIST = 24
    MAX = 25


#: Human names of the ids (``cxl_command_names[]`` in the UAPI header).  The
#: kernel prefixes deprecated ones with "Deprecated "; see :func:`command_name`.
_COMMAND_NAMES: dict[CxlMemCommandId, str] = {
    CxlMemCommandId.INVALID: "Invalid Command",
    CxlMemCommandId.IDENTIFY: "Identify Command",
    CxlMemCommandId.RAW: "Raw device command",
    CxlMemCommandId.GET_SUPPORTED_LOGS: "Get Supported Logs",
    CxlMemCommandId.GET_FW_INFO: "Get FW Info",
    CxlMemCommandId.GET_PARTITION_INFO: "Get Partition Information",
    CxlMemCommandId.GET_LSA: "Get Label Storage Area",
    CxlMemCommandId.GET_HEALTH_INFO: "Get Health Info",
    CxlMemCommandId.GET_LOG: "Get Log",
    CxlMemCommandId.SET_PARTITION_INFO: "Set Partition Information",
    CxlMemCommandId.SET_LSA: "Set Label Storage Area",
    CxlMemCommandId.GET_ALERT_CONFIG: "Get Alert Configuration",
    CxlMemCommandId.SET_ALERT_CONFIG: "Set Alert Configuration",
    CxlMemCommandId.GET_SHUTDOWN_STATE: "Get Shutdown State",
    CxlMemCommandId.SET_SHUTDOWN_STATE: "Set Shutdown State",
    CxlMemCommandId.GET_POISON: "Get Poison List",
    CxlMemCommandId.INJECT_POISON: "Inject Poison",
    CxlMemCommandId.CLEAR_POISON: "Clear Poison",
    CxlMemCommandId.GET_SCAN_MEDIA_CAPS: "Get Scan Media Capabilities",
    CxlMemCommandId.SCAN_MEDIA: "Scan Media",
    CxlMemCommandId.GET_SCAN_MEDIA: "Get Scan Media Results",
    CxlMemCommandId.GET_TIMESTAMP: "Get Timestamp",
    CxlMemCommandId.GET_LOG_CAPS: "Get Log Capabilities",
    CxlMemCommandId.CLEAR_LOG: "Clear Log",
    CxlMemCommandId.GET_SUP_LOG_SUBLIST: "Get Supported Logs Sub-List",
    CxlMemCommandId.MAX: "invalid / last command",
}
COMMAND_NAMES: Mapping[CxlMemCommandId, str] = MappingProxyType(_COMMAND_NAMES)

#: Ids the current UAPI header marks ``___DEPRECATED``.
DEPRECATED_IDS: frozenset[CxlMemCommandId] = frozenset(
    {
        CxlMemCommandId.GET_POISON,
        CxlMemCommandId.INJECT_POISON,
        CxlMemCommandId.CLEAR_POISON,
        CxlMemCommandId.SCAN_MEDIA,
        CxlMemCommandId.GET_SCAN_MEDIA,
    }
)


def command_name(cmd_id: int, *, modern: bool = True) -> str:
    """Name of a UAPI command id as the kernel's name table spells it.

    With ``modern`` the deprecated ids get the "Deprecated " prefix that
    recent kernels use.
    """
    cid = CxlMemCommandId(cmd_id)
    name = _COMMAND_NAMES[cid]
    if modern and cid in DEPRECATED_IDS:
        return "Deprecated " + name
    return name


@dataclass(frozen=True)
class CommandSpec:
    """One row of the kernel's ``cxl_mem_commands[]`` table."""

    id: CxlMemCommandId
    opcode: int  # 0 for RAW (the opcode comes from send_cmd.raw.opcode)
    size_in: int  # bytes, or VARIABLE
    size_out: int  # bytes, or VARIABLE
    force_enable: bool = False  # CXL_CMD_FLAG_FORCE_ENABLE
    deprecated: bool = False

    @property
    def name(self) -> str:
        return command_name(self.id)


def _spec(cid: CxlMemCommandId, opcode: int, size_in: int, size_out: int,
          force: bool = False) -> CommandSpec:
    return CommandSpec(cid, opcode, size_in, size_out, force, cid in DEPRECATED_IDS)


_V = VARIABLE
_C = CxlMemCommandId
_O = Opcode
_TABLE: dict[CxlMemCommandId, CommandSpec] = {
    s.id: s
    for s in (
        _spec(_C.IDENTIFY, _O.IDENTIFY_MEMORY_DEVICE, 0, 0x43, force=True),
        _spec(_C.RAW, 0, _V, _V),
        _spec(_C.GET_SUPPORTED_LOGS, _O.GET_SUPPORTED_LOGS, 0, _V, force=True),
        _spec(_C.GET_FW_INFO, _O.GET_FW_INFO, 0, 0x50),
        _spec(_C.GET_PARTITION_INFO, _O.GET_PARTITION_INFO, 0, 0x20),
        _spec(_C.GET_LSA, _O.GET_LSA, 0x08, _V),
        _spec(_C.GET_HEALTH_INFO, _O.GET_HEALTH_INFO, 0, 0x12),
        _spec(_C.GET_LOG, _O.GET_LOG, 0x18, _V, force=True),
        _spec(_C.SET_PARTITION_INFO, _O.SET_PARTITION_INFO, 0x0A, 0),
        _spec(_C.SET_LSA, _O.SET_LSA, _V, 0),
        _spec(_C.GET_ALERT_CONFIG, _O.GET_ALERT_CONFIG, 0, 0x10),
        _spec(_C.SET_ALERT_CONFIG, _O.SET_ALERT_CONFIG, 0x0C, 0),
        _spec(_C.GET_SHUTDOWN_STATE, _O.GET_SHUTDOWN_STATE, 0, 0x01),
        _spec(_C.SET_SHUTDOWN_STATE, _O.SET_SHUTDOWN_STATE, 0x01, 0),
        _spec(_C.GET_POISON, _O.GET_POISON_LIST, 0x10, _V),
        _spec(_C.INJECT_POISON, _O.INJECT_POISON, 0x08, 0),
        _spec(_C.CLEAR_POISON, _O.CLEAR_POISON, 0x48, 0),
        _spec(_C.GET_SCAN_MEDIA_CAPS, _O.GET_SCAN_MEDIA_CAPABILITIES, 0x10, 0x04),
        _spec(_C.SCAN_MEDIA, _O.SCAN_MEDIA, 0x11, 0),
        _spec(_C.GET_SCAN_MEDIA, _O.GET_SCAN_MEDIA_RESULTS, 0, _V),
        _spec(_C.GET_TIMESTAMP, _O.GET_TIMESTAMP, 0, 0x08),
        _spec(_C.GET_LOG_CAPS, _O.GET_LOG_CAPABILITIES, 0x10, 0x04),
        _spec(_C.CLEAR_LOG, _O.CLEAR_LOG, 0x10, 0),
        _spec(_C.GET_SUP_LOG_SUBLIST, _O.GET_SUPPORTED_LOGS_SUB_LIST, 0x02, _V),
    )
}
del _V, _C, _O

#: UAPI id -> kernel command table row, for every id 1 .. MAX-1.
KERNEL_COMMANDS: Mapping[CxlMemCommandId, CommandSpec] = MappingProxyType(_TABLE)

_BY_OPCODE: dict[int, CommandSpec] = {s.opcode: s for s in _TABLE.values() if s.opcode}


def command_spec(cmd_id: int) -> CommandSpec:
    """Kernel table row for a UAPI id (KeyError for INVALID/MAX/unknown)."""
    return _TABLE[CxlMemCommandId(cmd_id)]


def opcode_for_id(cmd_id: int) -> int:
    """Mailbox opcode the kernel sends for a UAPI id (0 for RAW)."""
    return command_spec(cmd_id).opcode


def id_for_opcode(opcode: int) -> CxlMemCommandId | None:
    """UAPI id the kernel associates with an opcode, or None (cxl_mem_find_command)."""
    spec = _BY_OPCODE.get(opcode)
    return spec.id if spec else None


def raw_command_allowed(opcode: int, *, allow_all: bool = False) -> bool:
    """Whether the kernel lets the RAW id carry ``opcode`` (cxl_mem_raw_command_allowed).

    Blocked: the security command sets 44h-46h and the opcodes the kernel
    must coordinate itself (activate FW, set partition, set LSA, set
    shutdown state, scan media, get scan media results; in recent kernels
    also the poison commands and the feature commands).  ``allow_all`` models the ``raw_allow_all``
    debugfs knob.  Opcode 0 is never valid (libcxl rejects it).
    """
    if opcode <= 0 or opcode > 0xFFFF:
        return False
    if allow_all:
        return True
    if (opcode >> 8) in SECURITY_COMMAND_SETS:
        return False
    return opcode not in _RAW_DISABLED


_RAW_DISABLED: frozenset[int] = frozenset(
    {
        Opcode.ACTIVATE_FW,
        Opcode.SET_PARTITION_INFO,
        Opcode.SET_LSA,
        Opcode.SET_SHUTDOWN_STATE,
        Opcode.SCAN_MEDIA,
        Opcode.GET_SCAN_MEDIA_RESULTS,
        Opcode.GET_POISON_LIST,
        Opcode.INJECT_POISON,
        Opcode.CLEAR_POISON,
        Opcode.GET_SUPPORTED_FEATURES,
        Opcode.GET_FEATURE,
        Opcode.SET_FEATURE,
    }
)


class ReturnCode(IntEnum):
    """Mailbox Status "Return Code" values (CXL r3.1 Table 8-34)."""

    SUCCESS = 0x00
    BACKGROUND_COMMAND_STARTED = 0x01
    INVALID_INPUT = 0x02
    UNSUPPORTED = 0x03
    INTERNAL_ERROR = 0x04
    RETRY_REQUIRED = 0x05
    BUSY = 0x06
    MEDIA_DISABLED = 0x07
    FW_TRANSFER_IN_PROGRESS = 0x08
    FW_TRANSFER_OUT_OF_ORDER = 0x09
    FW_AUTHENTICATION_FAILED = 0x0A
    INVALID_SLOT = 0x0B
    ACTIVATION_FAILED_FW_ROLLED_BACK = 0x0C
    ACTIVATION_FAILED_COLD_RESET_REQUIRED = 0x0D
    INVALID_HANDLE = 0x0E
    INVALID_PHYSICAL_ADDRESS = 0x0F
    INJECT_POISON_LIMIT_REACHED = 0x10
    PERMANENT_MEDIA_FAILURE = 0x11
    ABORTED = 0x12
    INVALID_SECURITY_STATE = 0x13
    INCORRECT_PASSPHRASE = 0x14
    UNSUPPORTED_MAILBOX = 0x15
    INVALID_PAYLOAD_LENGTH = 0x16
    INVALID_LOG = 0x17
    INTERRUPTED = 0x18
    UNSUPPORTED_FEATURE_VERSION = 0x19
    UNSUPPORTED_FEATURE_SELECTION_VALUE = 0x1A
    FEATURE_TRANSFER_IN_PROGRESS = 0x1B
    FEATURE_TRANSFER_OUT_OF_ORDER = 0x1C
    RESOURCES_EXHAUSTED = 0x1D
    INVALID_EXTENT_LIST = 0x1E
    TRANSFER_OUT_OF_ORDER = 0x1F
    REQUEST_ABORT_NOT_SUPPORTED = 0x20


_RC = ReturnCode
_RETURN_CODE_NAMES: dict[ReturnCode, str] = {
    _RC.SUCCESS: "Success",
    _RC.BACKGROUND_COMMAND_STARTED: "Background Command Started",
    _RC.INVALID_INPUT: "Invalid Input",
    _RC.UNSUPPORTED: "Unsupported",
    _RC.INTERNAL_ERROR: "Internal Error",
    _RC.RETRY_REQUIRED: "Retry Required",
    _RC.BUSY: "Busy",
    _RC.MEDIA_DISABLED: "Media Disabled",
    _RC.FW_TRANSFER_IN_PROGRESS: "FW Transfer in Progress",
    _RC.FW_TRANSFER_OUT_OF_ORDER: "FW Transfer Out of Order",
    _RC.FW_AUTHENTICATION_FAILED: "FW Authentication Failed",
    _RC.INVALID_SLOT: "Invalid Slot",
    _RC.ACTIVATION_FAILED_FW_ROLLED_BACK: "Activation Failed, FW Rolled Back",
    _RC.ACTIVATION_FAILED_COLD_RESET_REQUIRED: "Activation Failed, Cold Reset Required",
    _RC.INVALID_HANDLE: "Invalid Handle",
    _RC.INVALID_PHYSICAL_ADDRESS: "Invalid Physical Address",
    _RC.INJECT_POISON_LIMIT_REACHED: "Inject Poison Limit Reached",
    _RC.PERMANENT_MEDIA_FAILURE: "Permanent Media Failure",
    _RC.ABORTED: "Aborted",
    _RC.INVALID_SECURITY_STATE: "Invalid Security State",
    _RC.INCORRECT_PASSPHRASE: "Incorrect Passphrase",
    _RC.UNSUPPORTED_MAILBOX: "Unsupported Mailbox",
    _RC.INVALID_PAYLOAD_LENGTH: "Invalid Payload Length",
    _RC.INVALID_LOG: "Invalid Log",
    _RC.INTERRUPTED: "Interrupted",
    _RC.UNSUPPORTED_FEATURE_VERSION: "Unsupported Feature Version",
    _RC.UNSUPPORTED_FEATURE_SELECTION_VALUE: "Unsupported Feature Selection Value",
    _RC.FEATURE_TRANSFER_IN_PROGRESS: "Feature Transfer in Progress",
    _RC.FEATURE_TRANSFER_OUT_OF_ORDER: "Feature Transfer Out of Order",
    _RC.RESOURCES_EXHAUSTED: "Resources Exhausted",
    _RC.INVALID_EXTENT_LIST: "Invalid Extent List",
    _RC.TRANSFER_OUT_OF_ORDER: "Transfer Out of Order",
    _RC.REQUEST_ABORT_NOT_SUPPORTED: "Request Abort Not Supported",
}
del _RC
RETURN_CODE_NAMES: Mapping[ReturnCode, str] = MappingProxyType(_RETURN_CODE_NAMES)

#: Last return code present in the kernel's rc table (EXTLIST); the kernel
#: indexes that table without a bound check, we treat anything past it as ENXIO.
KERNEL_RC_TABLE_LAST = ReturnCode.INVALID_EXTENT_LIST


def return_code_name(rc: int) -> str:
    """Spec name of a return code, or ``"Reserved (0xNN)"`` for unknown values."""
    try:
        return _RETURN_CODE_NAMES[ReturnCode(rc)]
    except ValueError:
        return f"Reserved ({rc:#04x})"


def errno_for_return_code(rc: int) -> int:
    """Positive errno the kernel's cxl_mbox_cmd_rc2errno() yields for ``rc``.

    0 for Success, EFAULT for "Invalid Physical Address", ENXIO otherwise
    (including codes beyond the kernel's table).
    """
    if rc == ReturnCode.SUCCESS:
        return 0
    if rc == ReturnCode.INVALID_PHYSICAL_ADDRESS:
        return errno.EFAULT
    return errno.ENXIO
