"""Time budgets (AutoGluon's ``time_limit`` convention): parse "90s" / "15m" / "1h30m", watch a deadline.

A budget is wall-clock seconds from the moment the command starts. :func:`parse_duration` reads
what a user types (``--time-limit``); :class:`Budget` tells how much is left; :func:`fmt_duration`
writes seconds back the way a person reads them.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

from questlab.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: str | float | int | None, option: str = "--time-limit") -> float | None:
    """Seconds from ``"90s"``, ``"15m"``, ``"1h"``, ``"1h30m"``, ``"2.5m"`` or plain seconds (``"600"``, 600).

    ``None`` is no budget. Anything else (empty, negative, zero, an unknown unit) is a
    :class:`UsageError` naming ``option``.
    """
    if value is None:
        return None
    hint = "give a duration such as 90s, 15m, 1h or 1h30m (plain numbers are seconds)"
    if isinstance(value, bool):
        raise UsageError(f"{option} {value!r}: {hint}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            units = [u for _, u in parts]
            if not parts or "".join(n + u for n, u in parts) != text or len(set(units)) != len(units):
                raise UsageError(f"{option} {value!r}: {hint}") from None
            if units != sorted(units, key="hms".index):
                raise UsageError(f"{option} {value!r}: {hint}") from None
            seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{option} {value!r}: give a duration above zero ({hint})")
    return seconds


def fmt_duration(seconds: float) -> str:
    """``42 s``, ``6 min 5 s``, ``2 h 3 min``: a duration as a person reads it."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min" + (f" {s} s" if s else "")
    h, rest = divmod(round(seconds), 3600)
    return f"{h} h" + (f" {rest // 60} min" if rest // 60 else "")


@dataclass
class Budget:
    """A wall-clock budget of ``limit`` seconds that started at ``start`` (``time.monotonic``)."""

    limit: float
    start: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.start

    @property
    def remaining(self) -> float:
        """Seconds left (negative once overrun)."""
        return self.limit - self.elapsed

    def fits(self, seconds: float, reserve: float = 0.0) -> bool:
        """Whether ``seconds`` more work, plus ``reserve`` kept for later, ends within the budget."""
        return seconds + reserve <= self.remaining

    def describe(self) -> str:
        """``budget 15 min: used 14 min 2 s (94%)``."""
        return f"budget {fmt_duration(self.limit)}: used {fmt_duration(self.elapsed)} ({self.elapsed / self.limit:.0%})"
