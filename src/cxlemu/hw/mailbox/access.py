"""What the mailbox needs from a device's media (Clear Poison writes the
replacement data, Sanitize and Secure Erase zero the media: CXL r3.1
§8.2.9.9.4.3, §8.2.9.9.5).  The interface alone, so that the media store
(data/media.py) implements it without importing the mailbox's command set."""

from __future__ import annotations


class MediaAccess:
    """What the mailbox needs from the media (clear poison, sanitize)."""

    def write(self, dpa: int, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def zero(self, dpa: int, length: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError
