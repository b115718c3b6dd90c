"""What every CLI command shares: the --store option and the user-error guard.

Bad input (data, config, unknown run, missing encoder) becomes one line on stderr and exit code
2, never a traceback.
"""

from __future__ import annotations

import functools
from typing import Annotated

import typer

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="MLflow tracking URI or folder (default: $QUESTLAB_STORE or ./questlab-store)"),
]


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def open_store(uri: str | None):
    """The run store at ``uri`` (imported lazily: MLflow takes seconds to import)."""
    from questlab.store import Store

    return Store(uri)


def guard(fn):
    """Turn expected user errors into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from questlab.config import ConfigError
        from questlab.data import DataError
        from questlab.encoders import EncoderNotFoundError
        from questlab.store import RunNotFoundError

        try:
            return fn(*args, **kwargs)
        except (DataError, ConfigError, RunNotFoundError, EncoderNotFoundError) as exc:
            fail(str(exc))
        except (ValueError, FileNotFoundError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            fail(str(msg))

    return wrapper
