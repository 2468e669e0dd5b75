"""Building a large object graph without CPython's cyclic garbage collector
walking it over and over.

A machine's platform and kernel are a graph of about 60 objects per device
that lives as long as the machine.  While it is being built, every full
(generation 2) collection walks every live object, and full collections come
more often the bigger the heap grows: booting 16 384 devices spent 43 % of
its time in ten full collections, booting 1024 devices 3 % in one, which made
boot time grow faster than the number of devices.  :func:`collector_paused`
suspends the collector for the duration of such a build; garbage made in the
meantime (there is little: the objects are kept) is collected afterwards as
usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Suspend the cyclic collector inside the block; restore its state after.
    (With several threads, one leaving its block may re-enable the collector
    while another is still inside its own: that costs time, never memory or
    correctness.)"""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
