"""questlab's errors: a user's mistake or a refused request is a ``QuestlabError``; anything else is a bug.

The CLI prints a ``QuestlabError`` as one line and exits with code 2; any other exception is a bug
in questlab: exit code 1 with its traceback. Each kind also derives from the builtin a caller
would expect (``ValueError``, ``LookupError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from pathlib import Path


class QuestlabError(Exception):
    """Base of every error that is the user's to fix: the message says what to do."""


class UsageError(QuestlabError, ValueError):
    """A request questlab refuses: a bad argument, runs that cannot be combined, a missing option."""


class ConfigError(QuestlabError, ValueError):
    """A config file that cannot be used: which file, which key, what is accepted."""


class SettingsCannotFitError(ConfigError):
    """A model's settings that cannot fit the rows it is given (``min_df`` above the number of
    training rows, say): which parameter, its value, and what to do. Not a bug: the CLI exits 2,
    and a study records the trial as FAILED with this message and goes on to the next one."""


class DataError(QuestlabError, ValueError):
    """Bad input data: which file, column and row, and what to do about it."""

    def __init__(
        self,
        file: str | Path,
        message: str,
        column: str | None = None,
        row: int | None = None,
        qa_id: object | None = None,
        hint: str | None = None,
        id_name: str = "qa_id",
    ) -> None:
        self.file, self.column, self.row, self.qa_id, self.hint = str(file), column, row, qa_id, hint
        self.id_name = id_name  # the task's id column: how the row's id is labelled
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.file]
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.row is not None:
            where.append(f"row {self.row}" + (f" ({self.id_name} {self.qa_id})" if self.qa_id is not None else ""))
        text = f"{', '.join(where)}: {self.message}"
        return f"{text}. {self.hint}" if self.hint else text


class RunNotFoundError(QuestlabError, LookupError):
    """No run matches the given id (or prefix)."""


class StoreError(QuestlabError, ValueError):
    """A store that cannot be opened or used: missing, unreachable, not an MLflow database."""


class StoreUnreachable(StoreError):
    """A tracking server that stopped answering while a run was recorded (what it had is kept)."""


class RunFormatError(QuestlabError, ValueError):
    """A run folder this questlab cannot read (missing files, an unknown or newer format)."""


class BundleError(QuestlabError, ValueError):
    """A bundle that cannot be written or used: which folder or file, and what to do."""


class PredictionError(QuestlabError, RuntimeError):
    """A stored model's predictions that cannot be used (non-finite, out of range, wrong shape):
    which run and fold model, so it can be refitted. Not the input's fault: HTTP answers 500."""


class EncoderNotFoundError(QuestlabError, RuntimeError):
    """The encoder is neither an installed known package nor a local model folder."""


class StudyError(QuestlabError, ValueError):
    """A study that cannot be started, joined or resumed as asked."""


class MissingExtraError(QuestlabError, ImportError):
    """A command needs a package of questlab's ``all`` extra that is not installed."""


class UnknownNameError(UsageError, KeyError):
    """A name that is not registered (a model family, say); the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
