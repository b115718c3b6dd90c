"""How questlab talks while it works: progress lines on stderr, so stdout carries only results.

``Say`` is the one callback type long-running functions take (``say=``); pass ``quiet`` to
silence them. The CLI prints run ids and paths on stdout, everything else goes through here.

Quiet by default: progress bars (rich, tqdm) only when stderr is a terminal
(:func:`progress_enabled`), a plain line per stage elsewhere; third-party load reports and notices
only under ``questlab --verbose`` or ``QUESTLAB_VERBOSE=1`` (:func:`silence_third_party`).
"""

from __future__ import annotations

import logging
import os
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


# --- quiet by default ------------------------------------------------------------------------
# Progress bars only on a terminal; third-party chatter (transformers' load reports, hub notices,
# tokenizers' fork warning) only under ``questlab --verbose`` / ``QUESTLAB_VERBOSE=1``.
ENV_VERBOSE = "QUESTLAB_VERBOSE"
ENV_QUIET = "QUESTLAB_QUIET"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def verbose() -> bool:
    """True under ``questlab --verbose`` or ``QUESTLAB_VERBOSE=1``: third-party logs are kept."""
    return _flag(ENV_VERBOSE)


def set_verbose(on: bool = True) -> None:
    """Turn verbose mode on (through the environment, so worker processes inherit it)."""
    if on:
        os.environ[ENV_VERBOSE] = "1"
        _set_library_verbosity()


def quiet_mode() -> bool:
    """True under ``QUESTLAB_QUIET=1`` (``serve`` sets it): no progress bars, no progress lines."""
    return _flag(ENV_QUIET)


def progress_enabled() -> bool:
    """The one switch for progress bars: stderr is a terminal and ``QUESTLAB_QUIET`` is not set.

    Elsewhere (a log file, a pipe, a notebook's captured stderr) each stage prints plain lines
    through ``say`` and no bar, so no ``\\r`` redraws or escape codes reach the log.
    """
    if quiet_mode():
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _set_library_verbosity() -> None:
    """Apply the switches to the libraries already imported (the environment covers later imports)."""
    level = logging.WARNING if verbose() else logging.ERROR
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(level)
        if progress_enabled():
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity(level)
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        (enable_progress_bars if progress_enabled() else disable_progress_bars)()


def silence_third_party() -> None:
    """Quiet transformers / huggingface_hub / tokenizers unless verbose; bars only on a terminal.

    Call before loading a model (cheap, idempotent). Silenced: transformers' LOAD REPORT (an
    encoder loaded without its pooler lists ``pooler.dense.weight`` as UNEXPECTED: by design),
    "Some weights ... were not used", the hub's offline notices and tokenizers' fork warning.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not verbose():
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if not progress_enabled():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _set_library_verbosity()
