"""How questlab talks while it works: progress lines on stderr, so stdout carries only results.

``Say`` is the one callback type long-running functions take (``say=``); pass ``quiet`` to
silence them. The CLI prints run ids and paths on stdout, everything else goes through here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Say = Callable[[str], None]


def stderr(msg: str) -> None:
    """The default ``say``: one line on stderr, flushed (progress survives a crash)."""
    print(msg, file=sys.stderr, flush=True)


def quiet(msg: str) -> None:
    """A ``say`` that prints nothing."""


def stderr_console() -> Any:
    """A rich console on stderr (progress bars, tables that are not results)."""
    from rich.console import Console

    return Console(stderr=True)
