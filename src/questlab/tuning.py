"""Hyper-parameter search (``questlab tune``): an Optuna study whose trials are recorded CV runs.

A *search space* (YAML, :class:`SearchSpace`) names config keys and their ranges or choices.
Each trial is one :func:`questlab.cv.run_cv` run of the base config with the sampled values
applied as ``--set`` overrides, on folds fixed for the whole study; after every fold the trial
reports the mean of its fold scores so far and the median pruner may stop it (the run is then
marked KILLED, the trial PRUNED).

**Honest tuning.** Picking the best of many trials on the same folds makes its CV optimistic.
A share of the questions (``holdout``, grouped, stratified by category) is split off before
anything else: no trial ever sees those rows. When the study ends, the chosen config alone is
trained on all the tuning rows and scored on them, once; that score (with a bootstrap interval
over questions) is reported beside the best CV.

**Recorded.** One parent MLflow run per study (tag ``questlab.kind=study``) holds the split
(``holdout.csv``: qa_id, group, fold 0 = held out, 1 = tuning), the trials' folds
(``folds.csv``, so trials use ``folds.from_run: PARENT``), the base config and the space, and at
the end the best config, ``report.html`` and the metrics ``best_cv`` / ``holdout_score``. Trials
and the holdout run are its MLflow child runs (``mlflow.parentRunId``).

**Distributed, resumable.** The study lives in an Optuna storage (SQLite beside the store by
default, any database URL to share it between machines). Trials counted are COMPLETE + PRUNED,
so ``trials`` is the total however many processes or sessions add to it; re-running the same
command resumes. Trials left RUNNING by a killed process stop sending heartbeats and are marked
FAIL (then replaced) once :data:`GRACE_PERIOD_S` has passed. ``workers=N`` runs N processes on
this machine; other machines join with :func:`join_study` (CLI: ``--join``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from questlab.config import ConfigError, RunConfig, parse_config, read_yaml, resolve_config, to_overrides
from questlab.cv import Data, Dataset, run_cv
from questlab.errors import StudyError
from questlab.folds import FOLDS_FILE, load_folds, make_folds, question_groups, save_folds
from questlab.schema import CATEGORY, ID
from questlab.store import TAG_ERROR, TAG_KIND, TAG_MODEL, RunRecord, RunStopped, Store, as_store

Say = Callable[[str], None]
StoreLike = str | Path | Store | None

KIND_STUDY = "study"
TAG_STUDY = "questlab.study"  # on the parent, every trial and the holdout run: the study name
TAG_TRIAL = "questlab.trial"  # a trial run's Optuna trial number
TAG_HOLDOUT = "questlab.holdout"  # "true" on the run scored on the held-out questions
TAG_PARENT = "mlflow.parentRunId"  # MLflow nests child runs under their parent with this tag

HOLDOUT_FILE = "holdout.csv"  # qa_id, group, fold: 0 = held-out question, 1 = tuning row
SPACE_FILE = "space.yaml"
CONFIG_FILE = "config.yaml"
STUDY_FILE = "study.json"
BEST_CONFIG_FILE = "best_config.yaml"
REPORT_FILE = "report.html"

# Optuna study user attrs: how every worker (and a resumed session) finds the study's state.
ATTR_PARENT = "questlab.parent_run_id"
ATTR_STORE = "questlab.store"
ATTR_TRAIN_SHA = "questlab.train_sha256"
ATTR_CONFIG_SHA = "questlab.config_sha256"
ATTR_SPACE_SHA = "questlab.space_sha256"
ATTR_HOLDOUT = "questlab.holdout"
ATTR_SEED = "questlab.seed"
ATTR_TRIALS = "questlab.trials"
ATTR_PRUNE = "questlab.prune"
ATTR_HOLDOUT_RUN = "questlab.holdout_run_id"
ATTR_HOLDOUT_TRIAL = "questlab.holdout_trial"
ATTR_HOLDOUT_LOOKS = "questlab.holdout_looks"

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what "trials" counts
LIVE = (*COUNTED, TrialState.RUNNING, TrialState.WAITING)  # counted, or on their way to it

HEARTBEAT_S = 15  # a running trial's process writes a heartbeat this often
GRACE_PERIOD_S = 90  # a RUNNING trial with no heartbeat for this long is marked FAIL (its process died)
JOIN_WAIT_S = 120  # how long a joining worker waits for the first process to set the study up
PRUNE_STARTUP_TRIALS = 5  # the median pruner compares only once this many trials have finished
TPE_STARTUP_TRIALS = 10  # random trials before TPE models the space
MAX_HOLDOUT = 0.9

# Keys a study fixes itself: its folds, the trials' names and records.
FIXED_KEYS = ("name", "description", "overrides", "log_model", "bootstrap", "model.name", "folds")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _quiet(msg: str) -> None:
    pass


# --- the search space -------------------------------------------------------------------------
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None


class ParamSpec(BaseModel):
    """One searched key: ``{float: [low, high]}``, ``{int: [low, high]}`` or ``{choice: [...]}``.

    Ranges take ``log: true`` (sample on a log scale; low > 0) or ``step``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    float_: tuple[FiniteFloat, FiniteFloat] | None = Field(None, alias="float")
    int_: tuple[StrictInt, StrictInt] | None = Field(None, alias="int")
    choice: list[Scalar] | None = None
    log: bool = False
    step: FiniteFloat | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        kinds = [k for k, v in (("float", self.float_), ("int", self.int_), ("choice", self.choice)) if v is not None]
        if len(kinds) != 1:
            got = f" (got {' and '.join(kinds)})" if kinds else ""
            raise ValueError(f"give exactly one of float: [low, high], int: [low, high] or choice: [...]{got}")
        if self.choice is not None:
            if not self.choice:
                raise ValueError("choice: give at least one value")
            if len({json.dumps(c) for c in self.choice}) != len(self.choice):
                raise ValueError(f"choice: a value is listed twice in {self.choice}")
            if self.log or self.step is not None:
                raise ValueError("log and step apply to float/int ranges, not to choices")
            return self
        low, high = self.float_ or self.int_  # type: ignore[misc]
        if low > high:
            raise ValueError(f"low {low} is above high {high}")
        if self.log and low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {low})")
        if self.log and self.step is not None:
            raise ValueError("give log or step, not both")
        if self.int_ is not None and self.step is not None and self.step != int(self.step):
            raise ValueError(f"an int range takes a whole step (got {self.step})")
        return self

    @property
    def kind(self) -> str:
        return "float" if self.float_ is not None else "int" if self.int_ is not None else "choice"

    def edge_values(self) -> list[Any]:
        """The values that validation tries: both ends of a range, every choice."""
        if self.choice is not None:
            return list(self.choice)
        return list(self.float_ or self.int_)  # type: ignore[arg-type]

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        """Sample this key in ``trial``."""
        if self.float_ is not None:
            return trial.suggest_float(key, self.float_[0], self.float_[1], log=self.log, step=self.step)
        if self.int_ is not None:
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(key, self.int_[0], self.int_[1], step=step, log=self.log)
        return trial.suggest_categorical(key, self.choice)  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.choice is not None:
            return "choice " + json.dumps(self.choice)
        low, high = self.float_ or self.int_  # type: ignore[misc]
        extra = " log" if self.log else f" step {self.step:g}" if self.step is not None else ""
        return f"{self.kind} [{low}, {high}]{extra}"


class SearchSpace(BaseModel):
    """A search space file: ``params`` maps config keys (``model.params.alpha``) to what to try."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, ParamSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_keys(self) -> SearchSpace:
        for key in self.params:
            if not key or key != key.strip() or "=" in key or any(not p for p in key.split(".")):
                raise ValueError(f"{key!r} is not a config key path such as model.params.alpha")
            fixed = next((f for f in FIXED_KEYS if key == f or key.startswith(f + ".")), None)
            if fixed:
                raise ValueError(
                    f"{key}: the study fixes {fixed} itself (same folds and records for every trial); "
                    "set it in the config instead"
                )
        return self

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every key in ``trial``: {config key: value}."""
        return {key: spec.suggest(trial, key) for key, spec in self.params.items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            {"params": {k: v.model_dump(by_alias=True, exclude_defaults=True) for k, v in self.params.items()}},
            sort_keys=False,
        )

    def digest(self) -> str:
        return _sha(self.model_dump(mode="json", by_alias=True))


def load_space(source: SearchSpace | Mapping[str, Any] | str | Path) -> SearchSpace:
    """Read and type-check a search space (a YAML file, a mapping or a SearchSpace).

    Problems raise :class:`ConfigError` naming the file and the key. Whether each key is a key
    of a given config is checked by :func:`check_space`.
    """
    if isinstance(source, SearchSpace):
        return source
    if isinstance(source, Mapping):
        data, where = dict(source), "search space"
    else:
        where = str(source)
        data = read_yaml(source, "search space")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with a 'params' key (see docs/tune.md)")
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"]]
            if loc[:1] == ["params"] and len(loc) > 1:
                loc = [f"params: {loc[1]}", *loc[2:]]  # the key itself holds dots: keep it whole
            where_key = ".".join(loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key" + (
                    " (accepted: float, int, choice, log, step)" if len(loc) > 1 else " (use params:)"
                )
            problems.append(f"{where_key}: {msg}")
        raise ConfigError(f"{where}: {'; '.join(problems)}") from None


def overrides_for(values: Mapping[str, Any]) -> list[str]:
    """Sampled values as the ``key=value`` overrides a trial's config records."""
    return to_overrides(dict(values))


def check_space(space: SearchSpace, base: RunConfig, source: str = "search space") -> None:
    """Apply every end of every range (and every choice) to ``base``, one key at a time, then all
    lows and all highs together: an unknown key or a value the config rejects is a ConfigError
    before any trial runs (an unknown key lists the accepted ones)."""
    data = base.model_dump(mode="json")
    for key, spec in space.params.items():
        for value in spec.edge_values():
            parse_config(data, source=f"{source}: params: {key}", overrides=to_overrides({key: value}))
    for end in (0, -1):
        values = {k: s.edge_values()[end] for k, s in space.params.items()}
        parse_config(
            data, source=f"{source} ({'lows' if end == 0 else 'highs'} together)", overrides=overrides_for(values)
        )


# --- data: the held-out questions -----------------------------------------------------------
def split_holdout(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Hold out ``share`` of the questions (whole groups, stratified by category), seeded.

    Returns ``qa_id, group, fold`` in the frame's row order: fold 0 = held out, 1 = tuning.
    It is a folds file, so the final run scores it with ``folds.from_file`` and ``--fold 0``.
    """
    groups = question_groups(frame)
    first = pd.DataFrame({"group": groups, "category": frame[CATEGORY].to_numpy()}).drop_duplicates("group")
    first = first.sort_values("group", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    # Within each category a random order, spread over [0, 1): taking the lowest ranks overall
    # keeps every category's share close to ``share`` and the total exact.
    position = np.empty(len(first))
    for _, idx in first.groupby("category", sort=True).indices.items():
        position[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    n_held = round(share * len(first))
    held = first["group"].to_numpy()[np.argsort(position, kind="stable")[:n_held]]
    fold = np.where(np.isin(groups, held), 0, 1)
    return pd.DataFrame({ID: frame[ID].to_numpy(), "group": groups, "fold": fold})


# --- storage ----------------------------------------------------------------------------------
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


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage with heartbeats (so trials of a dead process are failed)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}  # several processes write: wait for the lock
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_PERIOD_S
            )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise StudyError(f"storage {redact(url)}: Optuna cannot open it ({type(exc).__name__}: {first})") from None


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _count(study: optuna.Study, states: Sequence[TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


# --- results ----------------------------------------------------------------------------------
@dataclass
class TuneResult:
    """What a finished study reports; ``study`` is the Optuna study itself."""

    study_name: str
    study: optuna.Study
    parent_run_id: str
    best_trial: int
    best_run_id: str
    best_cv: float  # the best trial's CV (pooled OOF mean Spearman): optimistic, it was chosen
    best_cv_ci: tuple[float, float]
    best_config: RunConfig
    best_config_path: Path
    holdout_score: float | None  # the chosen config on the untouched questions (None: holdout 0)
    holdout_ci: tuple[float, float] | None
    holdout_run_id: str | None
    n_complete: int
    n_pruned: int
    n_failed: int
    report_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for a terminal."""
        lo, hi = self.best_cv_ci
        lines = [
            f"study {self.study_name}: {self.n_complete} complete, {self.n_pruned} pruned"
            + (f", {self.n_failed} failed" if self.n_failed else ""),
            f"best trial {self.best_trial}: CV {self.best_cv:.4f} (95% CI {lo:.4f}..{hi:.4f}), run {self.best_run_id}",
        ]
        if self.holdout_score is not None and self.holdout_ci is not None:
            hlo, hhi = self.holdout_ci
            lines.append(
                f"untouched questions: {self.holdout_score:.4f} (95% CI {hlo:.4f}..{hhi:.4f}), "
                f"run {self.holdout_run_id}; CV minus it {self.best_cv - self.holdout_score:+.4f}"
            )
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"best config: {self.best_config_path}; parent run {self.parent_run_id}")
        return "\n".join(lines)


@dataclass
class JoinResult:
    """What a joining worker did."""

    study_name: str
    parent_run_id: str
    trials_run: int  # counted trials (complete + pruned) this process ran


@dataclass
class _Ctx:
    """One process's view of a study: what its trials need."""

    study: optuna.Study
    name: str
    storage_url: str
    store: Store
    parent_id: str
    base: RunConfig
    space: SearchSpace
    train: pd.DataFrame  # the full train frame
    tuning: pd.DataFrame  # the rows trials see
    split: pd.DataFrame | None  # holdout.csv aligned to ``train`` (None: no holdout)
    trials: int
    seed: int
    holdout: float
    prune: bool
    say: Say
    worker: str

    @property
    def trial_base(self) -> dict[str, Any]:
        """The base config every trial starts from: the study's folds, no MLflow model."""
        data = self.base.model_dump(mode="json")
        data["folds"] = {"n_splits": self.base.folds.n_splits, "seed": self.base.folds.seed, "from_run": self.parent_id}
        data["log_model"] = False
        return data


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _check_base(config: RunConfig) -> None:
    if config.folds.from_run or config.folds.from_file:
        raise ConfigError(
            f"config {config.name!r}: the study makes its own folds on the tuning rows from folds.n_splits and "
            "folds.seed; remove folds.from_run / folds.from_file"
        )


def _sampler(seed: int, worker: int, n_existing: int) -> optuna.samplers.BaseSampler:
    # A different stream per worker and per session: a resumed study must not replay the random
    # start-up trials it already ran.
    return optuna.samplers.TPESampler(
        seed=(seed * 1_000_003 + worker * 7919 + n_existing) % 2**32, n_startup_trials=TPE_STARTUP_TRIALS
    )


def _pruner(prune: bool) -> optuna.pruners.BasePruner:
    if not prune:
        return optuna.pruners.NopPruner()
    # Step = folds done; pruning may start after the first fold (n_warmup_steps=0).
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS, n_warmup_steps=0)


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna logs every trial at INFO; questlab prints its own one line per trial."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


# --- the study ----------------------------------------------------------------------------------
def tune(
    config: RunConfig | Mapping[str, Any] | str | Path,
    space: SearchSpace | Mapping[str, Any] | str | Path,
    train: Data,
    *,
    trials: int = 40,
    set: Mapping[str, Any] | Sequence[str] | None = None,  # as in questlab.run
    store: StoreLike = None,
    storage: str | None = None,
    study_name: str | None = None,
    holdout: float = 0.2,
    seed: int | None = None,
    workers: int = 1,
    prune: bool = True,
    best_config_path: str | Path | None = None,
    say: Say | None = None,
) -> TuneResult:
    """Run (or resume) a study of ``trials`` trials in total, then score the best config on the
    held-out questions, write it to ``best_config_path`` and attach the report to the parent run.

    ``config``: a YAML path, a mapping or a RunConfig (``set`` overrides keys first); ``space``: a
    search space file, mapping or :class:`SearchSpace`; ``train``: the labelled CSV or DataFrame.
    ``storage``: an Optuna storage URL (default: :func:`default_storage`); ``study_name``: default
    the config's name; the same name resumes. ``holdout``: share of questions kept out of every
    trial (0 disables it: the best CV is then all there is, and it is optimistic). ``seed``
    (default the config's) seeds the split and the sampler. ``workers``: processes on this
    machine (this one included). ``prune``: median pruning after each fold.
    """
    say = say or _stderr
    if trials < 1:
        raise StudyError(f"trials {trials}: give at least 1")
    if not 0 <= holdout < MAX_HOLDOUT:
        raise StudyError(f"holdout {holdout}: give a share of questions in [0, {MAX_HOLDOUT})")
    if workers < 1:
        raise StudyError(f"workers {workers}: give at least 1")
    base = resolve_config(config, set)
    _check_base(base)
    space_source = str(space) if isinstance(space, str | Path) else "search space"
    space = load_space(space)
    check_space(space, base, space_source)
    data = Dataset.read(train, "train")
    st = as_store(store, create=True)
    url = storage or default_storage(st)
    name = study_name or base.name
    seed = base.seed if seed is None else seed
    t_start = time.perf_counter()

    with _optuna_quiet():
        optuna_storage = open_storage(url)
        study = optuna.create_study(
            storage=optuna_storage,
            study_name=name,
            direction="maximize",
            load_if_exists=True,
            sampler=_sampler(seed, 0, 0),
            pruner=_pruner(prune),
        )
        ctx = _prepare(study, name, url, st, base, space, data, trials, seed, holdout, prune, say)
        study.sampler = _sampler(seed, 0, len(study.trials))
        if holdout == 0:
            say("warning: holdout 0: no questions are kept out, so the best CV (chosen among trials) is optimistic")
        todo = trials - _count(study, COUNTED)
        procs: list[subprocess.Popen] = []
        tmp = tempfile.TemporaryDirectory(prefix="questlab-tune-")
        try:
            n_children = min(workers, max(todo, 0)) - 1
            threads = max(1, (os.cpu_count() or 1) // max(1, n_children + 1))
            if n_children > 0:
                train_path = train if not isinstance(train, pd.DataFrame) else _write_frame(data, Path(tmp.name))
                procs = _spawn_workers(ctx, n_children, Path(train_path), threads)
                say(f"study {name}: {todo} trial(s) to run in {n_children + 1} processes")
            elif todo > 0:
                say(f"study {name}: {todo} trial(s) to run")
            limit = _thread_limit(threads) if procs else contextlib.nullcontext()
            with limit:
                _run_until_done(ctx)
            _wait(procs, say)
            procs = []
            result = _finalize(ctx, best_config_path)
        except BaseException as exc:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                _mark_parent(st, ctx.parent_id, "KILLED", "interrupted: re-run the same command to resume the study")
            else:
                _mark_parent(st, ctx.parent_id, "FAILED", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            tmp.cleanup()
    say(result.summary())
    say(f"done in {time.perf_counter() - t_start:.0f} s")
    return result


def join_study(
    study_name: str,
    train: Data,
    *,
    store: StoreLike = None,
    storage: str | None = None,
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    space: SearchSpace | Mapping[str, Any] | str | Path | None = None,
    set: Mapping[str, Any] | Sequence[str] | None = None,  # as in questlab.run
    trials: int | None = None,
    worker: int | None = None,
    say: Say | None = None,
) -> JoinResult:
    """Run trials of a study another process started (another machine: same ``storage`` and
    ``store``) until it has its trials.

    The base config, the space, the split and the folds come from the study's parent run;
    ``config``/``space`` (if given) must be those, and ``train`` the file it was started with.
    Nothing is finalised here: the process that started the study does that.
    """
    say = say or _stderr
    st = as_store(store, create=True)
    url = storage or default_storage(st)
    with _optuna_quiet():
        optuna_storage = open_storage(url)
        study, parent_id = _wait_for_study(optuna_storage, study_name, url)
        attrs = study.user_attrs
        _parent_record(st, parent_id, attrs, study_name)
        parent = st.folder(parent_id)
        if not parent.has(CONFIG_FILE, SPACE_FILE):
            raise StudyError(f"study {study_name}: parent run {parent_id} holds no {CONFIG_FILE}/{SPACE_FILE}")
        base = parse_config(yaml.safe_load((parent / CONFIG_FILE).read_text()), source=f"run {parent_id}")
        recorded_space = load_space(yaml.safe_load((parent / SPACE_FILE).read_text()))
        if config is not None:
            given = resolve_config(config, set)
            if _sha(given.model_dump(mode="json")) != _sha(base.model_dump(mode="json")):
                raise StudyError(
                    f"study {study_name} was started with another config (see {CONFIG_FILE} of run {parent_id})"
                )
        if space is not None and load_space(space).digest() != recorded_space.digest():
            raise StudyError(
                f"study {study_name} was started with another search space (see {SPACE_FILE} of run {parent_id})"
            )
        data = Dataset.read(train, "train")
        _check_train(attrs, data, study_name)
        n = trials if trials is not None else int(attrs.get(ATTR_TRIALS, 0))
        if n < 1:
            raise StudyError(f"trials {n}: give at least 1")
        seed, prune = int(attrs[ATTR_SEED]), bool(attrs.get(ATTR_PRUNE, True))
        index = worker if worker is not None else os.getpid() % 1000 + 1000
        study = optuna.load_study(
            study_name=study_name,
            storage=optuna_storage,
            sampler=_sampler(seed, index, len(study.trials)),
            pruner=_pruner(prune),
        )
        split = _load_split(st, parent_id, data.frame) if float(attrs[ATTR_HOLDOUT]) > 0 else None
        ctx = _Ctx(
            study=study,
            name=study_name,
            storage_url=url,
            store=st,
            parent_id=parent_id,
            base=base,
            space=recorded_space,
            train=data.frame,
            tuning=_tuning_rows(data.frame, split),
            split=split,
            trials=n,
            seed=seed,
            holdout=float(attrs[ATTR_HOLDOUT]),
            prune=prune,
            say=say,
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )
        return JoinResult(study_name, parent_id, _optimize(ctx))


def _wait_for_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> tuple[optuna.Study, str]:
    """The study and its parent run id, waiting a little for a first process still setting it up."""
    deadline = time.monotonic() + JOIN_WAIT_S
    while True:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            parent = study.user_attrs.get(ATTR_PARENT)
            if parent:
                return study, parent
        except KeyError:
            pass
        if time.monotonic() > deadline:
            raise StudyError(
                f"no study {name!r} set up in storage {redact(url)} after {JOIN_WAIT_S} s: "
                "start it first (the same command without --join)"
            )
        time.sleep(1.0)


def _parent_record(store: Store, parent_id: str, attrs: Mapping[str, Any], name: str) -> RunRecord:
    try:
        return store.get(parent_id)
    except LookupError:
        raise StudyError(
            f"study {name}'s parent run {parent_id} is not in store {store.uri} (it was started with "
            f"store {attrs.get(ATTR_STORE)}): give that store"
        ) from None


def _check_train(attrs: Mapping[str, Any], data: Dataset, name: str) -> None:
    want = attrs.get(ATTR_TRAIN_SHA)
    if want and want != data.sha256:
        raise StudyError(
            f"the train data given ({data.name}, sha256 {data.sha256[:12]}...) is not what study {name} "
            f"was started with (sha256 {want[:12]}...)"
        )


def _load_split(store: Store, parent_id: str, frame: pd.DataFrame) -> pd.DataFrame:
    folder = store.folder(parent_id)
    if not folder.has(HOLDOUT_FILE):
        raise StudyError(f"parent run {parent_id} holds no {HOLDOUT_FILE}: the study's split is lost")
    return load_folds(folder / HOLDOUT_FILE, frame)


def _tuning_rows(frame: pd.DataFrame, split: pd.DataFrame | None) -> pd.DataFrame:
    if split is None:
        return frame
    return frame[split["fold"].to_numpy() == 1].reset_index(drop=True)


def _prepare(
    study: optuna.Study,
    name: str,
    url: str,
    store: Store,
    base: RunConfig,
    space: SearchSpace,
    data: Dataset,
    trials: int,
    seed: int,
    holdout: float,
    prune: bool,
    say: Say,
) -> _Ctx:
    """Set up a new study's parent run, split and folds; or check a resumed one is the same."""
    attrs = study.user_attrs
    parent_id = attrs.get(ATTR_PARENT)
    wanted = {
        ATTR_CONFIG_SHA: (_sha(base.model_dump(mode="json")), f"another config (see {CONFIG_FILE} of the parent run)"),
        ATTR_SPACE_SHA: (space.digest(), f"another search space (see {SPACE_FILE} of the parent run)"),
        ATTR_HOLDOUT: (holdout, f"holdout {attrs.get(ATTR_HOLDOUT)}"),
        ATTR_SEED: (seed, f"seed {attrs.get(ATTR_SEED)}"),
        ATTR_PRUNE: (prune, "pruning " + ("on" if attrs.get(ATTR_PRUNE) else "off")),
    }
    if parent_id:
        _check_train(attrs, data, name)
        for key, (value, what) in wanted.items():
            if attrs.get(key) != value:
                raise StudyError(
                    f"study {name} (parent run {parent_id}) was started with {what}: resume it as it was "
                    "started, or give a new --study name"
                )
        record = _parent_record(store, parent_id, attrs, name)
        if record.status != "RUNNING":
            store.reopen(parent_id)
        study.set_user_attr(ATTR_TRIALS, trials)
        split = _load_split(store, parent_id, data.frame) if holdout > 0 else None
        done = _count(study, COUNTED)
        say(f"resuming study {name} (parent run {parent_id}): {done} of {trials} trials done")
    else:
        split = split_holdout(data.frame, holdout, seed) if holdout > 0 else None
        tuning = _tuning_rows(data.frame, split)
        if split is not None:
            n_held = int(split.loc[split["fold"] == 0, "group"].nunique())
            if n_held < 2:
                raise StudyError(f"holdout {holdout} keeps {n_held} question(s) out: too few to score; give more")
        folds = make_folds(tuning, n_splits=base.folds.n_splits, seed=base.folds.seed)
        parent_id = store.create_run(
            name,
            tags={
                TAG_KIND: KIND_STUDY,
                TAG_MODEL: base.model.name,
                TAG_STUDY: name,
                "questlab.optuna_storage": redact(url),
            },
        )
        folder = store.writer(parent_id)
        (folder / CONFIG_FILE).write_text(base.to_yaml())
        (folder / SPACE_FILE).write_text(space.to_yaml())
        save_folds(folds, folder.path)
        parts = [CONFIG_FILE, SPACE_FILE, FOLDS_FILE, STUDY_FILE]
        if split is not None:
            split.to_csv(folder / HOLDOUT_FILE, index=False)
            parts.append(HOLDOUT_FILE)
        info = {
            "study": name,
            "storage": redact(url),
            "train_file": data.name,
            "train_sha256": data.sha256,
            "holdout": holdout,
            "seed": seed,
            "rows": len(data.frame),
            "tuning_rows": len(tuning),
            "holdout_rows": 0 if split is None else int((split["fold"] == 0).sum()),
            "holdout_questions": 0 if split is None else int(split.loc[split["fold"] == 0, "group"].nunique()),
        }
        (folder / STUDY_FILE).write_text(json.dumps(info, indent=1))
        store.sync(parent_id, *parts)
        store.log_params(
            parent_id,
            {
                "holdout": holdout,
                "seed": seed,
                "prune": prune,
                "folds.n_splits": base.folds.n_splits,
                "folds.seed": base.folds.seed,
                **{f"space.{k}": s.describe() for k, s in space.params.items()},
            },
        )
        for key, (value, _) in wanted.items():
            study.set_user_attr(key, value)
        study.set_user_attr(ATTR_TRAIN_SHA, data.sha256)
        study.set_user_attr(ATTR_STORE, store.uri)
        study.set_user_attr(ATTR_TRIALS, trials)
        study.set_user_attr(ATTR_PARENT, parent_id)  # last: a joining worker takes its presence as "ready"
        held = (
            "no held-out questions"
            if split is None
            else f"{info['holdout_questions']} questions ({info['holdout_rows']} rows) held out"
        )
        say(f"study {name}: parent run {parent_id}; {len(tuning)} tuning rows, {held}")
    return _Ctx(
        study=study,
        name=name,
        storage_url=url,
        store=store,
        parent_id=parent_id,
        base=base,
        space=space,
        train=data.frame,
        tuning=_tuning_rows(data.frame, split),
        split=split,
        trials=trials,
        seed=seed,
        holdout=holdout,
        prune=prune,
        say=say,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def _mark_parent(store: Store, parent_id: str, status: str, message: str) -> None:
    with contextlib.suppress(Exception):  # the original error matters more than this record
        store.set_tags(parent_id, {TAG_ERROR: message[:5000]})
        store.finish(parent_id, status)


# --- trials -----------------------------------------------------------------------------------
class _SurplusTrial(Exception):
    """Raised when another worker already took the last trial slot (the trial is marked FAIL)."""


def _run_until_done(ctx: _Ctx) -> None:
    """Optimise until the study counts ``trials`` COMPLETE + PRUNED trials (waiting for other
    workers' running trials, and replacing any that failed)."""
    while True:
        _optimize(ctx)
        _wait_for_running(ctx)
        if _count(ctx.study, COUNTED) >= ctx.trials:
            return


def _optimize(ctx: _Ctx) -> int:
    """Run trials in this process until the study's counted + running trials reach ``trials``."""
    ran = 0
    study = ctx.study

    def count_ran(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran
        ran += trial.state in COUNTED

    while True:
        _fail_stale(study)
        if _count(study, LIVE) >= ctx.trials:
            return ran
        study.optimize(
            lambda trial: _objective(ctx, trial),
            callbacks=[optuna.study.MaxTrialsCallback(ctx.trials, states=LIVE), count_ran],
            catch=(_SurplusTrial,),
            gc_after_trial=False,
        )


def _wait_for_running(ctx: _Ctx, poll_s: float = 2.0) -> None:
    """Wait until no trial of the study is running (other workers), failing stale ones."""
    told = False
    while True:
        _fail_stale(ctx.study)
        running = _count(ctx.study, (TrialState.RUNNING,))
        if not running:
            return
        if not told:
            ctx.say(f"waiting for {running} trial(s) still running in other workers")
            told = True
        time.sleep(poll_s)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _params_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in values.items())


def _objective(ctx: _Ctx, trial: optuna.Trial) -> float:
    """One trial: a recorded CV run of the base config with the sampled values, pruned by fold."""
    study, n = ctx.study, trial.number
    # Exactly ``trials`` in total across workers: of concurrent trials, the lowest numbers win.
    live_before = [t for t in study.get_trials(deepcopy=False, states=LIVE) if t.number <= n]
    if len(live_before) > ctx.trials:
        trial.set_user_attr("surplus", True)
        study.stop()
        raise _SurplusTrial("another worker took the last trial of the study")
    values = ctx.space.suggest(trial)
    trial.set_user_attr("worker", ctx.worker)
    config = parse_config(
        {**ctx.trial_base, "name": f"{ctx.name}-t{n}"},
        source=f"study {ctx.name} trial {n}",
        overrides=overrides_for(values),
    )
    steps: list[float] = []

    def on_fold(k: int, score: float, scores: list[float]) -> None:
        mean = float(np.mean(scores))
        steps.append(mean)
        trial.report(mean, step=len(scores))
        if trial.should_prune():
            raise RunStopped(f"pruned by the median rule after {len(scores)} fold(s) (mean {mean:.4f})")

    tags = {TAG_PARENT: ctx.parent_id, TAG_STUDY: ctx.name, TAG_TRIAL: str(n)}
    t0 = time.perf_counter()
    try:
        run_id = run_cv(config, ctx.tuning, store=ctx.store, say=_quiet, on_fold=on_fold, tags=tags)
    except RunStopped:
        run_id = _find_trial_run(ctx, n)
        if run_id:
            trial.set_user_attr("run_id", run_id)
        ctx.say(
            f"trial {n}: pruned after {len(steps)} fold(s) at {steps[-1]:.4f} [{_params_text(values)}] "
            f"{time.perf_counter() - t0:.1f} s"
        )
        raise optuna.TrialPruned() from None
    metrics = ctx.store.get(run_id).metrics
    value = float(metrics["cv_score"])
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("ci", [metrics.get("cv_ci_low", math.nan), metrics.get("cv_ci_high", math.nan)])
    ctx.store.log_metrics(ctx.parent_id, {"trial_cv": value}, step=n)
    best = _best_value(study)
    mark = " (best so far)" if best is None or value > best else ""
    ctx.say(
        f"trial {n}: CV {value:.4f}{mark} [{_params_text(values)}] {time.perf_counter() - t0:.1f} s, run {run_id[:8]}"
    )
    return value


def _best_value(study: optuna.Study) -> float | None:
    done = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done) if done else None


def _find_trial_run(ctx: _Ctx, number: int) -> str | None:
    """The run of a trial stopped inside run_cv (which returns no id when it raises)."""
    found = ctx.store.client.search_runs(
        [ctx.store.experiment_id()],
        filter_string=f"tags.`{TAG_PARENT}` = '{ctx.parent_id}' and tags.`{TAG_TRIAL}` = '{number}'",
        max_results=1,
    )
    return found[0].info.run_id if found else None


# --- workers ----------------------------------------------------------------------------------
def _write_frame(data: Dataset, folder: Path) -> Path:
    """A DataFrame's train data as the CSV workers read (same sha256 as the frame's identity)."""
    path = folder / "train.csv"
    path.write_bytes(data.frame.to_csv(index=False).encode())
    return path


@contextlib.contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    """Cap BLAS/OpenMP threads while several worker processes share the cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def _spawn_workers(ctx: _Ctx, count: int, train_path: Path, threads: int) -> list[subprocess.Popen]:
    """Start ``count`` joining processes on this machine (``python -m questlab.tuning``)."""
    src = str(Path(__file__).resolve().parents[1])  # so the worker imports this very questlab
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    procs = []
    for i in range(1, count + 1):
        spec = {
            "study": ctx.name,
            "storage": ctx.storage_url,
            "store": ctx.store.uri,
            "train": str(Path(train_path).resolve()),
            "trials": ctx.trials,
            "worker": i,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "questlab.tuning", json.dumps(spec)], env=env, stdout=subprocess.DEVNULL
            )
        )
    return procs


def _wait(procs: list[subprocess.Popen], say: Say) -> None:
    for i, p in enumerate(procs, start=1):
        rc = p.wait()
        if rc != 0:
            say(f"warning: worker {i} exited with code {rc} (its messages are above); its trials were replaced")


def _worker_main(argv: list[str]) -> int:
    """Entry point of a worker process: ``python -m questlab.tuning SPEC_JSON``."""
    spec = json.loads(argv[0])
    label = f"[worker {spec['worker']}] "
    try:
        join_study(
            spec["study"],
            spec["train"],
            store=spec["store"],
            storage=spec["storage"],
            trials=spec["trials"],
            worker=spec["worker"],
            say=lambda msg: _stderr(label + msg),
        )
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        _stderr(f"{label}error: {exc}")
        return 2
    return 0


# --- the end of a study -------------------------------------------------------------------------
def _finalize(ctx: _Ctx, best_config_path: str | Path | None) -> TuneResult:
    """Write the best config, score it once on the held-out questions, report, finish the parent."""
    study, store = ctx.study, ctx.store
    states = [t.state for t in study.get_trials(deepcopy=False)]
    n_complete, n_pruned = states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED)
    n_failed = sum(
        1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if not t.user_attrs.get("surplus")
    )
    if n_complete == 0:
        _mark_parent(store, ctx.parent_id, "FAILED", "no trial completed")
        raise StudyError(
            f"study {ctx.name}: no trial completed ({n_pruned} pruned, {n_failed} failed): nothing to choose"
        )
    best = study.best_trial
    best_run = str(best.user_attrs.get("run_id", ""))
    best_ci = tuple(best.user_attrs.get("ci", [math.nan, math.nan]))
    notes: list[str] = []
    base_data = ctx.base.model_dump(mode="json")
    best_overrides = overrides_for(best.params)

    holdout_id = holdout_score = holdout_ci = None
    if ctx.split is not None:
        holdout_id = _holdout_run(ctx, best, base_data, best_overrides, notes)
        metrics = store.get(holdout_id).metrics
        holdout_score = float(metrics["cv_score"])
        holdout_ci = (float(metrics.get("cv_ci_low", math.nan)), float(metrics.get("cv_ci_high", math.nan)))
    else:
        notes.append(
            "no questions were held out: the best CV was chosen among trials on the same folds and is optimistic"
        )

    description = f"best of study {ctx.name}: trial {best.number}, CV {best.value:.4f}"
    if holdout_score is not None:
        description += f"; on {ctx.holdout:.0%} untouched questions {holdout_score:.4f}"
    best_config = parse_config(
        {**base_data, "name": f"{ctx.name}-best", "description": description},
        source=f"study {ctx.name} best trial",
        overrides=best_overrides,
    )
    path = Path(best_config_path) if best_config_path else Path.cwd() / f"{ctx.name}-best.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(best_config.to_yaml())
    folder = store.writer(ctx.parent_id)
    (folder / BEST_CONFIG_FILE).write_text(best_config.to_yaml())
    store.sync(ctx.parent_id, BEST_CONFIG_FILE)

    result = TuneResult(
        study_name=ctx.name,
        study=study,
        parent_run_id=ctx.parent_id,
        best_trial=best.number,
        best_run_id=best_run,
        best_cv=float(best.value),
        best_cv_ci=(float(best_ci[0]), float(best_ci[1])),
        best_config=best_config,
        best_config_path=path.resolve(),
        holdout_score=holdout_score,
        holdout_ci=holdout_ci,
        holdout_run_id=holdout_id,
        n_complete=n_complete,
        n_pruned=n_pruned,
        n_failed=n_failed,
        notes=notes,
    )
    metrics = {
        "best_cv": result.best_cv,
        "best_cv_ci_low": result.best_cv_ci[0],
        "best_cv_ci_high": result.best_cv_ci[1],
        "trials_complete": n_complete,
        "trials_pruned": n_pruned,
        "trials_failed": n_failed,
    }
    if holdout_score is not None and holdout_ci is not None:
        metrics |= {
            "holdout_score": holdout_score,
            "holdout_ci_low": holdout_ci[0],
            "holdout_ci_high": holdout_ci[1],
            "cv_minus_holdout": result.best_cv - holdout_score,
        }
    store.log_metrics(ctx.parent_id, metrics)
    tags = {"questlab.best_trial": str(best.number), "questlab.best_run": best_run}
    if holdout_id:
        tags["questlab.holdout_run"] = holdout_id
    store.set_tags(ctx.parent_id, tags)
    try:
        result.report_path = store.attach(ctx.parent_id, study_report(ctx, result), REPORT_FILE)
    except Exception as exc:  # a plotting problem must not lose the study's result
        notes.append(f"the report could not be written ({type(exc).__name__}: {exc})")
    store.finish(ctx.parent_id, "FINISHED")
    return result


def _holdout_run(ctx: _Ctx, best: FrozenTrial, base_data: dict, best_overrides: list[str], notes: list[str]) -> str:
    """The chosen config trained on every tuning row and scored on the held-out questions, once.

    A study re-finalised with the same best trial reuses that run; a new best trial (more trials
    were added) is a second look at the held-out questions, and is said so.
    """
    study, store = ctx.study, ctx.store
    attrs = study.user_attrs
    previous = attrs.get(ATTR_HOLDOUT_RUN)
    looks = int(attrs.get(ATTR_HOLDOUT_LOOKS, 0))
    if previous and attrs.get(ATTR_HOLDOUT_TRIAL) == best.number:
        with contextlib.suppress(LookupError):
            if store.get(previous).status == "FINISHED":
                ctx.say(f"the best trial is still {best.number}: its held-out score (run {previous}) is kept")
                return previous
    split_path = store.folder(ctx.parent_id) / HOLDOUT_FILE
    config = parse_config(
        {
            **base_data,
            "name": f"{ctx.name}-holdout",
            "folds": {"n_splits": 2, "seed": ctx.base.folds.seed, "from_file": str(split_path)},
        },
        source=f"study {ctx.name} holdout run",
        overrides=best_overrides,
    )
    tags = {
        TAG_PARENT: ctx.parent_id,
        TAG_STUDY: ctx.name,
        TAG_HOLDOUT: "true",
        "questlab.best_trial": str(best.number),
    }
    ctx.say(
        f"scoring trial {best.number}'s config on the held-out questions (trained on all {len(ctx.tuning)} tuning rows)"
    )
    run_id = run_cv(config, ctx.train, store=store, only_folds=[0], say=_quiet, tags=tags)
    looks += 1
    study.set_user_attr(ATTR_HOLDOUT_RUN, run_id)
    study.set_user_attr(ATTR_HOLDOUT_TRIAL, best.number)
    study.set_user_attr(ATTR_HOLDOUT_LOOKS, looks)
    if looks > 1:
        notes.append(
            f"the held-out questions have now scored {looks} chosen configs (the study was extended and its best "
            "trial changed): the latest score is no longer untouched by the choice"
        )
    return run_id


# --- the report ---------------------------------------------------------------------------------
def _trial_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        steps = t.intermediate_values
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                # Optuna gives a pruned trial its last intermediate value: not a CV, shown apart
                "value": t.value if t.state == TrialState.COMPLETE and t.value is not None else math.nan,
                "last_step": max(steps) if steps else 0,
                "last_mean": steps[max(steps)] if steps else math.nan,
                "seconds": t.duration.total_seconds() if t.duration else math.nan,
                "run_id": t.user_attrs.get("run_id", ""),
                **{f"p:{k}": v for k, v in t.params.items()},
            }
        )
    return pd.DataFrame(rows)


def _plot_history(frame: pd.DataFrame) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from questlab.analysis.report import COLORS

    fig, ax = plt.subplots(figsize=(8, 3.4))
    done = frame[frame["state"] == "COMPLETE"].sort_values("number")
    pruned = frame[frame["state"] == "PRUNED"]
    ax.scatter(done["number"], done["value"], color=COLORS["question"], s=22, label="complete: CV", zorder=3)
    if len(pruned):
        label = "pruned: mean of the folds done"
        ax.scatter(pruned["number"], pruned["last_mean"], marker="x", color=COLORS["grey"], s=22, label=label)
    if len(done):
        ax.step(done["number"], done["value"].cummax(), where="post", color=COLORS["ok"], label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean Spearman")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("optimisation history")
    return fig


def _plot_folds(study: optuna.Study) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from questlab.analysis.report import COLORS

    fig, ax = plt.subplots(figsize=(8, 3.4))
    for t in study.get_trials(deepcopy=False, states=COUNTED):
        steps = sorted(t.intermediate_values.items())
        if not steps:
            continue
        x, y = zip(*steps, strict=True)
        if t.state == TrialState.PRUNED:
            ax.plot(x, y, ls="--", color=COLORS["grey"], lw=0.8, marker="x", ms=4)
        else:
            ax.plot(x, y, color=COLORS["question"], lw=0.8, alpha=0.7, marker="o", ms=2)
    ax.set_xlabel("folds done")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean Spearman of the folds done")
    ax.set_title("per-fold progress (grey dashed: pruned)")
    return fig


def _plot_params(frame: pd.DataFrame, space: SearchSpace) -> Any:
    import matplotlib.pyplot as plt

    from questlab.analysis.report import COLORS

    keys = list(space.params)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    done = frame[frame["state"] == "COMPLETE"]
    for ax, key in zip(axes[0], keys, strict=True):
        col = f"p:{key}"
        if col in done:
            xs = done[col] if space.params[key].kind != "choice" else done[col].astype(str)
            ax.scatter(xs, done["value"], color=COLORS["question"], s=14)
            if space.params[key].log:
                ax.set_xscale("log")
        ax.set_title(key, fontsize=8)
    axes[0][0].set_ylabel("CV")
    fig.suptitle("CV against each parameter (complete trials)", fontsize=10, y=1.04)
    return fig


def _plot_importances(importances: Mapping[str, float]) -> Any:
    import matplotlib.pyplot as plt

    from questlab.analysis.report import COLORS

    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color=COLORS["question"])
    ax.set_xlabel("importance (fANOVA, share of the CV variance over complete trials)")
    ax.set_title("parameter importance")
    return fig


def param_importances(study: optuna.Study, seed: int = 0) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances over complete trials, or None and why not (too few trials, ...)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3:
        return None, f"only {len(done)} complete trial(s): too few to estimate parameter importance"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator)), ""
    except Exception as exc:  # e.g. every complete trial drew the same values
        return None, f"parameter importance could not be estimated ({type(exc).__name__}: {exc})"


def study_report(ctx: _Ctx, result: TuneResult) -> str:
    """The HTML report of a finished study: summary, history, per-fold progress, importances, trials."""
    from questlab.analysis.report import _e, _page, _table, figure_tag

    frame = _trial_frame(ctx.study)
    lo, hi = result.best_cv_ci
    rows = [
        ["study", _e(result.study_name)],
        ["parent run", f"<code>{_e(result.parent_run_id)}</code>"],
        ["storage", f"<code>{_e(redact(ctx.storage_url))}</code>"],
        ["trials", f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed"],
        ["best trial", f"{result.best_trial} (run <code>{_e(result.best_run_id)}</code>)"],
        ["best CV (chosen among trials: optimistic)", f"{result.best_cv:.4f} (95% CI {lo:.4f}..{hi:.4f})"],
    ]
    if result.holdout_score is not None and result.holdout_ci is not None:
        hlo, hhi = result.holdout_ci
        held = int((ctx.split["fold"] == 0).sum()) if ctx.split is not None else 0
        rows += [
            [
                f"untouched questions ({ctx.holdout:.0%}, {held} rows)",
                f"<b>{result.holdout_score:.4f}</b> (95% CI {hlo:.4f}..{hhi:.4f}), "
                f"run <code>{_e(result.holdout_run_id)}</code>",
            ],
            [
                "CV minus untouched",
                f"{result.best_cv - result.holdout_score:+.4f} (selection optimism and noise; the held-out model "
                f"trains on all tuning rows, a fold model on {ctx.base.folds.n_splits - 1}/{ctx.base.folds.n_splits})",
            ],
        ]
    notes = "".join(f"<p>{_e(n)}</p>" for n in result.notes)
    sections = [("Summary", _table(["", ""], rows) + notes)]
    sections.append(("Optimisation history", figure_tag(_plot_history(frame), "optimisation history")))
    sections.append(("Per-fold progress and pruning", figure_tag(_plot_folds(ctx.study), "intermediate values")))
    importances, why = param_importances(ctx.study, seed=ctx.seed)
    sections.append(
        (
            "Parameter importance",
            figure_tag(_plot_importances(importances), "parameter importance")
            if importances
            else f'<p class="muted">{_e(why)}</p>',
        )
    )
    sections.append(("Parameters", figure_tag(_plot_params(frame, ctx.space), "CV against each parameter")))
    keys = list(ctx.space.params)
    table_rows = [
        [
            str(r["number"]),
            _e(r["state"]),
            "" if math.isnan(r["value"]) else f"{r['value']:.4f}",
            f"{r['last_step']} ({r['last_mean']:.4f})" if r["last_step"] else "",
            *[_e(_fmt(r.get(f"p:{k}", ""))) for k in keys],
            "" if math.isnan(r["seconds"]) else f"{r['seconds']:.1f}",
            f"<code>{_e(str(r['run_id'])[:8])}</code>",
        ]
        for _, r in frame.sort_values("number").iterrows()
    ]
    sections.append(
        (
            "Trials",
            _table(
                ["trial", "state", "CV", "folds done (mean)", *[k.rsplit(".", 1)[-1] for k in keys], "s", "run"],
                table_rows,
            ),
        )
    )
    sections.append(("Best config", f"<pre>{_e(result.best_config.to_yaml())}</pre>"))
    sections.append(("Search space", f"<pre>{_e(ctx.space.to_yaml())}</pre>"))
    return _page(f"questlab study {result.study_name}", sections)


if __name__ == "__main__":  # a worker process started by tune(workers=N)
    from questlab.tuning import _worker_main as main  # the package's module, not this __main__ copy

    sys.exit(main(sys.argv[1:]))
