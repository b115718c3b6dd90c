"""The Optuna storage a study lives in: its URL, opening it with heartbeats, stale trials, counting."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from questlab.errors import StudyError
from questlab.store import Store
from questlab.tuning.common import is_counted, is_live

HEARTBEAT_S = 15  # a running trial's process writes a heartbeat this often
GRACE_PERIOD_S = 90  # a RUNNING trial with no heartbeat for this long is marked FAIL (its process died)
# Set in the environment, these replace the two above (seconds): every process of a study should see the same.
ENV_HEARTBEAT = "QUESTLAB_TUNE_HEARTBEAT_S"
ENV_GRACE = "QUESTLAB_TUNE_GRACE_S"


def redact(url: str) -> str:
    """A storage URL without its password (it goes into tags, reports and messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def default_storage(store: Store) -> str:
    """SQLite beside a local store (``<store>/optuna.db``), else ``./questlab-optuna.db``."""
    folder = store.root if store.is_local else Path.cwd()
    name = "optuna.db" if store.is_local else "questlab-optuna.db"
    return f"sqlite:///{(Path(folder) / name).resolve()}"


def _seconds(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise StudyError(f"${name}={text!r}: give a whole number of seconds, at least 1")
    return int(text)


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds: ``$QUESTLAB_TUNE_HEARTBEAT_S`` and
    ``$QUESTLAB_TUNE_GRACE_S`` where set, else :data:`HEARTBEAT_S` and :data:`GRACE_PERIOD_S`
    (read when a storage is opened). Keep the grace period several heartbeats long."""
    return _seconds(ENV_HEARTBEAT, HEARTBEAT_S), _seconds(ENV_GRACE, GRACE_PERIOD_S)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage with heartbeats (so trials of a dead process are failed)."""
    heartbeat, grace = heartbeat_settings()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}  # several processes write: wait for the lock
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=grace
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise StudyError(f"storage {redact(url)}: Optuna cannot open it ({type(exc).__name__}: {first})") from None


def fail_stale_trials(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def count_trials(study: optuna.Study, states: Sequence[TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def count_counted(study: optuna.Study) -> int:
    """Trials the study's ``trials`` counts (see :func:`~questlab.tuning.common.is_counted`)."""
    return sum(map(is_counted, study.get_trials(deepcopy=False)))


def count_live(study: optuna.Study) -> int:
    """Counted trials and those running or waiting."""
    return sum(map(is_live, study.get_trials(deepcopy=False)))
