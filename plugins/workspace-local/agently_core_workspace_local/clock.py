"""The clock leases expire by, shared by every process on this host.

A lease's deadline is stored as ``(epoch, deadline)``. On Linux the epoch is the kernel's
boot id and the deadline is on ``CLOCK_MONOTONIC`` (:func:`time.monotonic`): one clock for
all processes of the host that never jumps when the wall clock is set (NTP steps, manual
changes, daylight saving). After a reboot the monotonic clock starts again from zero, so a
lease stored under another boot id is simply expired: its holder died with the old boot.

Where there is no boot id (not Linux) the epoch is ``"wall"`` and deadlines are on
:func:`time.time`: correct while the wall clock only moves forward smoothly; a clock step
backwards lengthens leases, a step forwards shortens them.

Limits, all documented in docs/workspace-backends.md: ``CLOCK_MONOTONIC`` does not run
while the machine is suspended (holders are suspended too); processes in different Linux
time namespaces (rare, opt-in containers) do not share it. The local backend is
single-host by design: SQLite's WAL mode needs shared memory, so every process that opens
the store sees the same clock.
"""

from __future__ import annotations

import time
from functools import cache

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@cache
def epoch() -> str:
    """``"boot:<id>"`` on Linux, else ``"wall"``."""
    try:
        with open(_BOOT_ID, encoding="ascii") as handle:
            boot = handle.read().strip()
    except OSError:
        return "wall"
    return f"boot:{boot}" if boot else "wall"


def now() -> tuple[str, float]:
    """``(epoch, seconds)`` on the clock that epoch names."""
    current = epoch()
    return current, (time.time() if current == "wall" else time.monotonic())


def expired(stored_epoch: str | None, deadline: float | None) -> bool:
    """Has a deadline stored under ``stored_epoch`` passed (or was it set in another boot)?"""
    if stored_epoch is None or deadline is None:
        return True
    current, seconds = now()
    return stored_epoch != current or seconds >= deadline
