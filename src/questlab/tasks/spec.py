"""A task as data: which columns are texts and how models read them, how rows group, which
targets with which ranges and levels, and which metric scores them.

A spec is YAML (``tasks/quest.yaml`` and ``tasks/ell.yaml`` ship in the package; any file works)
validated here; :func:`questlab.tasks.load_task` finds and reads one. Nothing here reads data:
checking a CSV against a task is ``questlab.data``'s job.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from questlab.metrics import METRICS, Metric, get_metric

Role = Literal["first", "second"]
ROLES: tuple[str, ...] = Role.__args__


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextColumn(_Strict):
    """A text column and its role: texts of role ``first`` form the first segment a model reads
    (in the order listed), ``second`` the second segment of a cross-encoder pair."""

    name: str
    role: Role = "first"


class Target(_Strict):
    """One target: its column, its range, and for an ordinal target its levels."""

    name: str
    low: float
    high: float
    kind: Literal["continuous", "ordinal"] = "continuous"
    levels: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        if not self.low < self.high:
            raise ValueError(f"target {self.name!r}: range [{self.low:g}, {self.high:g}] is empty (low must be < high)")
        if self.kind == "ordinal" and not self.levels:
            raise ValueError(f"target {self.name!r} is ordinal: give its levels (levels: [...] or step: ...)")
        if self.kind == "continuous" and self.levels:
            raise ValueError(f"target {self.name!r} is continuous but has levels: make it kind: ordinal")
        if self.levels:
            off = [v for v in self.levels if not self.low <= v <= self.high]
            if off:
                raise ValueError(
                    f"target {self.name!r}: level {off[0]:g} lies outside its range [{self.low:g}, {self.high:g}]"
                )
            if list(self.levels) != sorted(set(self.levels)):
                raise ValueError(f"target {self.name!r}: levels must be distinct and increasing")
        return self


class Route(_Strict):
    """Targets (names or ``fnmatch`` patterns) that read one segment only (QUEST's dual mode)."""

    targets: str | list[str]
    reads: Role


class Groups(_Strict):
    """How rows group for validation: rows sharing *any* key are one group (connected components).

    A key is one column or several; values are compared lower-cased with spaces collapsed.
    """

    any_of: list[list[str]] = Field(min_length=1)


class Folds(_Strict):
    """How folds are drawn: stratified on a categorical column, or on the binned targets."""

    stratify: str | None = None  # a column; None: quantile bins of the row's mean scaled target


def _targets_from_yaml(value: Any) -> Any:
    """``targets`` as a list of entries, or ``{names: [...], range: [lo, hi], kind, step|levels}``
    (shared by every name); an entry is a name or a mapping with its own range."""
    if isinstance(value, dict) and "names" in value:
        shared = {k: v for k, v in value.items() if k != "names"}
        names = value["names"]
        if not isinstance(names, list):
            raise ValueError("targets.names: a list of target columns")
        return [_target_entry({"name": n, **shared}) for n in names]
    if isinstance(value, list):
        return [_target_entry(v if isinstance(v, dict) else {"name": v}) for v in value]
    raise ValueError("targets: a list of targets, or a mapping with names: [...] and their shared range")


def _target_entry(entry: dict) -> dict:
    entry = dict(entry)
    if "range" in entry:
        rng = entry.pop("range")
        if not (isinstance(rng, list | tuple) and len(rng) == 2):
            raise ValueError(f"target {entry.get('name')!r}: range is [low, high]")
        entry["low"], entry["high"] = rng
    if "step" in entry:
        step = float(entry.pop("step"))
        if step <= 0:
            raise ValueError(f"target {entry.get('name')!r}: step must be > 0")
        lo, hi = float(entry.get("low", 0)), float(entry.get("high", 0))
        n = round((hi - lo) / step)
        if abs(lo + n * step - hi) > 1e-9 * max(1.0, abs(hi)):
            raise ValueError(f"target {entry.get('name')!r}: step {step:g} does not divide the range [{lo:g}, {hi:g}]")
        entry["levels"] = [round(lo + i * step, 10) for i in range(n + 1)]
    return entry


class Task(_Strict):
    """A rating task: columns, roles, groups, targets and metric. See the module docstring."""

    name: str
    description: str = ""
    id: str
    id_type: Literal["integer", "string"] = "string"  # what the id column holds (HTTP and MLflow schemas)
    texts: list[TextColumn] = Field(min_length=1)
    features: list[str] = []  # categorical columns models may use
    optional: list[str] = []  # columns a file may carry that models ignore (may be missing or empty)
    groups: Groups | None = None
    folds: Folds = Folds()
    targets: list[Target] = Field(min_length=1)
    routes: list[Route] = []
    metric: str
    columns: list[str] | None = None  # the input columns in file order (default: texts, features, optional, groups)

    @field_validator("groups", mode="before")
    @classmethod
    def _groups_shorthand(cls, value: Any) -> Any:
        if value in (None, "none"):
            return None
        if isinstance(value, str):
            return {"any_of": [[value]]}
        if isinstance(value, dict) and ("column" in value or "columns" in value):
            if set(value) - {"column", "columns"}:
                raise ValueError("groups: give column: NAME, columns: [A, B] or any_of: [[A, B], [C]]")
            return {"any_of": [[value["column"]]] if "column" in value else [list(value["columns"])]}
        return value

    @field_validator("targets", mode="before")
    @classmethod
    def _targets_shorthand(cls, value: Any) -> Any:
        return _targets_from_yaml(value)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        get_metric(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        inputs = [t.name for t in self.texts] + list(self.features) + list(self.optional)
        seen: set[str] = set()
        for col in [self.id, *inputs, *self.target_names]:
            if col in seen:
                raise ValueError(f"column {col!r} is named twice: each column has one place in a task")
            seen.add(col)
        if not any(t.role == "first" for t in self.texts):
            raise ValueError("texts: at least one text needs role: first (the segment every model reads)")
        for key in self.groups.any_of if self.groups else []:
            for col in key:
                if col in self.target_names or col == self.id:
                    raise ValueError(f"groups: {col!r} is the id or a target: group by input columns")
        if self.folds.stratify is not None and self.folds.stratify not in (*inputs, *self.group_columns):
            raise ValueError(f"folds.stratify: {self.folds.stratify!r} is not a column of the task")
        roles = {t.role for t in self.texts}
        for route in self.routes:
            if route.reads not in roles:
                raise ValueError(f"routes: reads {route.reads!r}, but no text has that role")
            for pattern in _patterns(route):
                if not fnmatch.filter(self.target_names, pattern):
                    raise ValueError(f"routes: {pattern!r} matches no target")
        if self.columns is not None and sorted(self.columns) != sorted(self._listed_inputs):
            extra = sorted(set(self.columns) - set(self._listed_inputs))
            missing = sorted(set(self._listed_inputs) - set(self.columns))
            raise ValueError(
                "columns: must list each input column once "
                + (f"(not a text, feature, optional or group column: {', '.join(extra)})" if extra else "")
                + (f"(missing: {', '.join(missing)})" if missing else "")
            )
        if self.metric == "rmse" and len(self.targets) != 1:
            raise ValueError(f"metric rmse scores one target, this task has {len(self.targets)}: use mcrmse")
        return self

    # what the stages read
    @property
    def target_names(self) -> tuple[str, ...]:
        """The targets, in submission order."""
        return tuple(t.name for t in self.targets)

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def text_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.texts)

    def segment(self, role: str) -> tuple[str, ...]:
        """The text columns of one role, in order (empty where the task has none)."""
        return tuple(t.name for t in self.texts if t.role == role)

    @property
    def is_pair(self) -> bool:
        """True when the texts form two segments (a cross-encoder pair)."""
        return bool(self.segment("second"))

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """Columns every row must fill: the texts and the feature columns."""
        return (*self.text_names, *self.features)

    @property
    def group_columns(self) -> tuple[str, ...]:
        """Columns that only say how rows group (not texts, features or optional): train files need them."""
        listed = {*self.text_names, *self.features, *self.optional}
        keys = self.groups.any_of if self.groups else []
        return tuple(dict.fromkeys(c for key in keys for c in key if c not in listed))

    @property
    def _listed_inputs(self) -> tuple[str, ...]:
        return (*self.text_names, *self.features, *self.optional, *self.group_columns)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Every column a row may carry besides id and targets, in file order (``columns``, where given)."""
        return tuple(self.columns) if self.columns is not None else self._listed_inputs

    @property
    def train_columns(self) -> tuple[str, ...]:
        return (self.id, *self.input_columns, *self.target_names)

    @property
    def test_columns(self) -> tuple[str, ...]:
        return (self.id, *self.input_columns)

    @property
    def lows(self) -> np.ndarray:
        return np.array([t.low for t in self.targets], dtype=np.float64)

    @property
    def highs(self) -> np.ndarray:
        return np.array([t.high for t in self.targets], dtype=np.float64)

    @property
    def scorer(self) -> Metric:
        """The task's metric object (``task.metric`` is its name)."""
        return METRICS[self.metric]

    def route_of(self, target: str) -> str | None:
        """The one segment ``target`` reads, or None where it reads every text."""
        for route in self.routes:
            if any(fnmatch.fnmatchcase(target, p) for p in _patterns(route)):
                return route.reads
        return None

    def to_data(self) -> dict[str, Any]:
        """The resolved spec as plain data (every target with its own range): what runs record."""
        return self.model_dump(mode="json")

    @property
    def fingerprint(self) -> str:
        """A short hash of the resolved spec: two tasks with the same fingerprint read data the same way."""
        blob = json.dumps(self.to_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _patterns(route: Route) -> list[str]:
    return [route.targets] if isinstance(route.targets, str) else list(route.targets)
