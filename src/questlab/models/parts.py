"""How models name a task's texts, and the few features only QUEST's columns allow.

Every model reads the texts a task lists (``task.texts``) and its feature columns
(``task.features``); nothing here asks a task's name. A part is named by its column, except
QUEST's three texts: they keep the short names questlab 0.9.0 wrote (``title``, ``body``,
``answer``), because saved models, feature names and run records carry them.

A few hand-made QUEST features read columns no other task has (the asker's and answerer's user
names and pages, the url). ``QuestColumns`` says whether a task carries them: the features are
available exactly where it does, whatever the task is called. This module and
``questlab.schema`` are the only places models name QUEST's columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from questlab.errors import ConfigError
from questlab.schema import ANSWER, BODY, CATEGORY, HOST, TITLE
from questlab.tasks import Task

# QUEST's column names (its own spec, tasks/quest.yaml): kept here, read only where a task has them.
_SHORT_NAMES = {TITLE: "title", BODY: "body", ANSWER: "answer"}
ASKER_NAME, ANSWERER_NAME = "question_user_name", "answer_user_name"
ASKER_PAGE, ANSWERER_PAGE, URL = "question_user_page", "answer_user_page", "url"


def short_name(column: str) -> str:
    """The name a model gives a text column: QUEST's 0.9.0 short names, any other column itself."""
    return _SHORT_NAMES.get(column, column)


def part_names(task: Task) -> dict[str, str]:
    """{short name: column} of every text of ``task``, in the task's order."""
    return {short_name(c): c for c in task.text_names}


def has_columns(task: Task, columns: tuple[str, ...]) -> bool:
    """True when ``task`` lists every one of ``columns`` (texts, features, optional or group columns)."""
    return set(columns) <= {*task.input_columns}


def require_columns(task: Task, columns: tuple[str, ...], what: str, key: str) -> None:
    """A ``ConfigError`` naming ``key`` and the task when the task lacks one of ``columns``."""
    missing = [c for c in columns if c not in task.input_columns]
    if missing:
        raise ConfigError(
            f"model.params.{key}: {what} reads column(s) {', '.join(missing)}, which task {task.name!r} does not have"
        )


# QUEST's text layout: the title, body and answer texts and the two user-name columns.
QUEST_TEXTS = (TITLE, BODY, ANSWER)
ASKER_COLUMNS = (ASKER_NAME, ANSWERER_NAME)
ID_COLUMNS = (URL, ASKER_PAGE, ANSWERER_PAGE)


def quest_layout(task: Task) -> bool:
    """True when ``task`` carries QUEST's texts (title, body, answer) and user names.

    Such a task gets the exact 0.9.0 feature layouts (same columns, same numbers); any other
    task the generic ones, built from its own text columns.
    """
    return set(QUEST_TEXTS) <= set(task.text_names) and has_columns(task, ASKER_COLUMNS)


def asker_answered(frame: pd.DataFrame) -> np.ndarray:
    """1 where the asker wrote the answer (both names given and equal; two empty names are two unknowns)."""
    asker = frame[ASKER_NAME].str.strip()
    return ((asker == frame[ANSWERER_NAME].str.strip()) & (asker != "")).to_numpy(float)


__all__ = [
    "ANSWER",
    "ASKER_COLUMNS",
    "BODY",
    "CATEGORY",
    "HOST",
    "ID_COLUMNS",
    "QUEST_TEXTS",
    "TITLE",
    "asker_answered",
    "has_columns",
    "part_names",
    "quest_layout",
    "require_columns",
    "short_name",
]
