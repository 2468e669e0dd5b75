"""Moved: the system-call interface of a program is ``cxlemu.kernel.syscalls``
(below the sysfs backend that hands one out).  This name stays for code
written against it."""

from cxlemu.kernel.syscalls import BASE_VPN, PAGE_SHIFT, Process  # noqa: F401
