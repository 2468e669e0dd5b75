"""The ``/dev/cxl/memN`` command path of libcxl (``cxl_cmd_new_generic``,
``cxl_cmd_submit``, ``do_cmd``) over the backend's ``open_memdev`` channel
and the client helpers of :mod:`cxlemu.hw.mailbox.client`.

What libcxl does, and what is reproduced here:

1. every ``cxl_cmd_new_*()`` first runs CXL_MEM_QUERY_COMMANDS (count,
   then the table).  Each ioctl goes through ``do_cmd()``, which opens the
   node and requires a character device with the major/minor recorded at
   enumeration.  Failures print, on the ``libcxl`` log::

       libcxl: do_cmd: failed to validate /dev/cxl/mem0 as a CXL memdev node
       libcxl: alloc_do_query: mem0: query commands failed: No such device or address
       libcxl: cxl_cmd_new_generic: mem0: query returned: No such device or address

   (or ``do_cmd: failed to open <path>: <strerror>`` when the node cannot be
   opened) and the command is not created;
2. a command id missing from the query table makes the command fail
   silently (EOPNOTSUPP);
3. ``cxl_cmd_submit()`` failures (ioctl errors) are silent except for the
   ``do_cmd`` validation messages; a non-zero mailbox return code is the
   command's status.  ``cxl list`` drops the JSON key in all these cases.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from cxlemu.hw.mailbox.opcodes import CxlMemCommandId
from cxlemu.util.lazy import lazy_module

if TYPE_CHECKING:
    from cxlemu.hw.mailbox.payloads import AlertConfig, FwInfo, HealthInfo, IdentifyMemoryDevice, PartitionInfo

# the mailbox client and payload codecs are imported when a command is sent
client = lazy_module("cxlemu.hw.mailbox.client")
payloads = lazy_module("cxlemu.hw.mailbox.payloads")

from .sysfs import strerror

if TYPE_CHECKING:
    from .memdev import Memdev

__all__ = ["MemdevMailbox", "CommandError"]

T = TypeVar("T")
_NOT_CXL = "not a CXL memdev node"


class CommandError(OSError):
    """A command could not be created or submitted (errno) — or completed
    with a non-zero mailbox status (``status``)."""

    def __init__(self, code: int, msg: str, status: int = 0):
        super().__init__(code, msg)
        self.status = status


class MemdevMailbox:
    """Commands to one memdev.  Every public method returns None (typed
    helpers) or raises :class:`CommandError` (``send``) where libcxl's
    callers would see a NULL command, a negative submit rc or a non-zero
    mailbox status."""

    def __init__(self, memdev: "Memdev"):
        self.memdev = memdev

    # ---- do_cmd() ----------------------------------------------------------------
    @property
    def path(self) -> str:
        return f"/dev/cxl/{self.memdev.devname}"

    def _log(self):
        return self.memdev.ctx.log

    def _do(self, op: Callable[[Any], T]) -> T:
        """Open/validate the node and run ``op(channel)``; OSError(-rc) on
        failure, with do_cmd()'s own messages."""
        md, log, backend = self.memdev, self._log(), self.memdev.ctx.backend
        path = self.path
        rdev = backend.chardev(path)
        if rdev is None and not backend.lexists(path):
            log.err("do_cmd", f"failed to open {path}: {strerror(errno.ENOENT)}")
            raise OSError(errno.ENOENT, strerror(errno.ENOENT), path)
        if rdev != (md.major, md.minor):
            log.err("do_cmd", f"failed to validate {path} as a CXL memdev node")
            raise OSError(errno.ENXIO, strerror(errno.ENXIO), path)
        try:
            ch = backend.open_memdev(path)
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENXIO):
                log.err("do_cmd", f"failed to validate {path} as a CXL memdev node")
                raise OSError(errno.ENXIO, strerror(errno.ENXIO), path) from None
            log.err("do_cmd", f"failed to open {path}: {strerror(e.errno or errno.EIO)}")
            raise
        if hasattr(ch, "expect_rdev"):
            ch.expect_rdev = (md.major, md.minor)
        try:
            return op(ch)
        except OSError as e:
            if e.errno == errno.ENXIO and e.strerror == _NOT_CXL:
                log.err("do_cmd", f"failed to validate {path} as a CXL memdev node")
            elif getattr(e, "filename", None) == path and e.errno != errno.ENXIO:
                log.err("do_cmd", f"failed to open {path}: {strerror(e.errno or errno.EIO)}")
            raise OSError(e.errno or errno.EIO, strerror(e.errno or errno.EIO)) from None
        finally:
            close = getattr(ch, "close", None)
            if close is not None:
                close()

    # ---- cxl_cmd_new_generic() -------------------------------------------------------
    def _new(self, cmd_id: int) -> bool:
        """Query the command table; True when ``cmd_id`` is listed."""
        devname = self.memdev.devname
        log = self._log()
        try:
            table = self._do(lambda ch: list(ch.query()))
        except OSError as e:
            log.err("alloc_do_query", f"{devname}: query commands failed: {strerror(e.errno or 0)}")
            log.err("cxl_cmd_new_generic", f"{devname}: query returned: {strerror(e.errno or 0)}")
            return False
        return any(int(c.id) == int(cmd_id) for c in table)

    def _run(self, cmd_id: int, helper: Callable[[Any], T]) -> T | None:
        if not self._new(cmd_id):
            return None
        try:
            return self._do(helper)
        except (OSError, client.MailboxError, payloads.PayloadError, ValueError):
            return None

    # ---- typed commands (cxl list -H -I -A -F) ------------------------------------------
    def identify(self) -> IdentifyMemoryDevice | None:
        return self._run(CxlMemCommandId.IDENTIFY, client.identify)

    def health_info(self) -> HealthInfo | None:
        return self._run(CxlMemCommandId.GET_HEALTH_INFO, client.get_health_info)

    def partition_info(self) -> PartitionInfo | None:
        return self._run(CxlMemCommandId.GET_PARTITION_INFO, client.get_partition_info)

    def alert_config(self) -> AlertConfig | None:
        return self._run(CxlMemCommandId.GET_ALERT_CONFIG, client.get_alert_config)

    def fw_info(self) -> FwInfo | None:
        return self._run(CxlMemCommandId.GET_FW_INFO, client.get_fw_info)

    # ---- generic --------------------------------------------------------------------------
    def send(self, cmd_id: int, payload_in: bytes = b"", out_size: int = 0) -> bytes:
        """Create, validate and submit one command (for the commands other
        cxl subcommands need: labels, set-partition, set-alert-config...).

        Raises :class:`CommandError`: errno EOPNOTSUPP/ENXIO... when the
        command cannot be created or submitted, or errno EIO with
        ``status`` = the mailbox return code when the device failed it.
        ``payload_in`` larger than ``payload_max`` is EINVAL, as in
        ``cxl_cmd_set_input_payload()``.
        """
        if not self._new(cmd_id):
            raise CommandError(errno.EOPNOTSUPP, strerror(errno.EOPNOTSUPP))
        if len(payload_in) > self.memdev.payload_max:
            raise CommandError(errno.EINVAL, strerror(errno.EINVAL))
        try:
            retval, out = self._do(lambda ch: ch.send(int(cmd_id), bytes(payload_in), out_size))
        except OSError as e:
            raise CommandError(e.errno or errno.EIO, strerror(e.errno or errno.EIO)) from None
        if retval != 0:
            raise CommandError(errno.EIO, f"mailbox status {retval}", status=retval)
        return out
