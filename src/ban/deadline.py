"""A wall-clock allowance for one run of a method (the equal-time comparison of the baselines).

`Deadline(seconds)` starts when made; `expired()` is checked by a method's loops at their
natural boundaries (an epoch, a target), and once it has returned True the run is `cut`: the
method stops optimising and decides from what it has. `Deadline(None)` never expires.
"""

from __future__ import annotations

import time


class Deadline:
    """`seconds` of wall-clock time from now (None: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.cut = False

    def expired(self) -> bool:
        """True once the allowance is spent (and from then on); marks the run as cut."""
        if self.seconds is not None and not self.cut and time.perf_counter() - self.start >= self.seconds:
            self.cut = True
        return self.cut
