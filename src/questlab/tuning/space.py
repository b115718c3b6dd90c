"""The search space: which config keys a study searches and their ranges or choices (YAML)."""

from __future__ import annotations

import json
import math
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import optuna
import yaml
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

from questlab.config import ConfigError, ModelConfig, RunConfig, parse_config, read_yaml, to_overrides
from questlab.models import get_model_class
from questlab.tuning.common import sha_of

# Keys a study fixes itself: its folds, the trials' names and records.
FIXED_KEYS = ("name", "description", "overrides", "log_model", "bootstrap", "model.name", "folds")


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
        if self.step is not None and self.step > high - low:
            raise ValueError(
                f"step {self.step:g} is larger than the range [{low}, {high}] (width {high - low:g}): "
                "give a smaller step or a wider range"
            )
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
        return sha_of(self.model_dump(mode="json", by_alias=True))


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
    """Check each key's kind of values against the type the config declares for it (a float range
    for an int parameter, a bool among an int's choices), then apply every end of every range (and
    every choice) to ``base``, one key at a time, then all lows and all highs together: an unknown
    key, a kind the parameter does not take or a value the config rejects is a ConfigError before
    any trial runs (an unknown key lists the accepted ones)."""
    data = base.model_dump(mode="json")
    for key, spec in space.params.items():
        problem = _kind_problem(key, spec, declared_type(key, base))
        if problem:
            raise ConfigError(f"{source}: params: {key}: {problem}")
    for key, spec in space.params.items():
        for value in spec.edge_values():
            parse_config(data, source=f"{source}: params: {key}", overrides=to_overrides({key: value}))
    for end in (0, -1):
        values = {k: s.edge_values()[end] for k, s in space.params.items()}
        parse_config(
            data, source=f"{source} ({'lows' if end == 0 else 'highs'} together)", overrides=overrides_for(values)
        )


def declared_type(key: str, base: RunConfig) -> Any:
    """The type annotation the config declares for ``key`` (``model.params.*``: the params class of
    ``base``'s model family); ``None`` where the key is unknown or free-form (then the config's own
    validation has the last word)."""
    schema: type[BaseModel] | None = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if schema is None or part not in schema.model_fields:
            return None
        if i == len(parts) - 1:
            return schema.model_fields[part].annotation
        if schema is ModelConfig and part == "params":
            try:
                schema = get_model_class(base.model.name).Params
            except KeyError:
                return None
            continue
        annotation = schema.model_fields[part].annotation
        schema = next(
            (c for c in (annotation, *get_args(annotation)) if isinstance(c, type) and issubclass(c, BaseModel)),
            None,
        )
    return None


_KIND_OF_TYPE = {bool: {"bool"}, int: {"int"}, float: {"int", "float"}, str: {"str"}, type(None): {"null"}}
_ARTICLE = {"bool": "a bool", "int": "an int", "float": "a float", "str": "a string", "null": "null"}


def _value_kind(value: Any) -> str:
    return "null" if value is None else {bool: "bool", int: "int", float: "float"}.get(type(value), "str")


def _accepted_kinds(annotation: Any) -> set[str] | None:
    """The kinds of scalar (bool, int, float, str, null) a parameter of this type takes; ``None``
    where its type is not one of these (a list, a path, ``Any``): not checked here."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _accepted_kinds(get_args(annotation)[0])
    if origin is Literal:
        return {_value_kind(v) for v in get_args(annotation)}
    if origin is Union or origin is types.UnionType:
        kinds: set[str] = set()
        for member in get_args(annotation):
            member_kinds = _accepted_kinds(member)
            if member_kinds is None:
                return None
            kinds |= member_kinds
        return kinds
    return _KIND_OF_TYPE.get(annotation)


def _type_name(annotation: Any, kinds: set[str]) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + json.dumps(list(get_args(annotation)))
    names = [_ARTICLE[k] for k in ("bool", "int", "float", "str", "null") if k in kinds]
    if "float" in kinds:
        names.remove("an int")  # a float parameter takes whole numbers too
    return " or ".join(names)


def _kind_problem(key: str, spec: ParamSpec, annotation: Any) -> str | None:
    """Why ``spec`` samples values of a kind the parameter does not take (None: it does not)."""
    name = key.rsplit(".", 1)[-1]
    kinds = _accepted_kinds(annotation) if annotation is not None else None
    if spec.choice is None:
        if kinds is None or spec.kind in kinds:
            return None
        low, high = spec.float_ or spec.int_  # type: ignore[misc]
        whole = (math.ceil(low), math.floor(high))
        hint = f": use {{int: [{whole[0]}, {whole[1]}]}}" if "int" in kinds and whole[0] <= whole[1] else ""
        return f"a {spec.kind} range, but {name} takes {_type_name(annotation, kinds)}{hint}"
    if kinds is None:  # no declared scalar type: at least the choices must be of one kind
        found = {"number" if k in ("int", "float") else k for k in map(_value_kind, spec.choice)} - {"null"}
        if len(found) > 1:
            return f"choice {json.dumps(spec.choice)} mixes kinds ({' and '.join(sorted(found))}): give one kind"
        return None
    for value in spec.choice:
        if _value_kind(value) not in kinds:
            return (
                f"choice {json.dumps(value)} is {_ARTICLE[_value_kind(value)]}, but {name} takes "
                f"{_type_name(annotation, kinds)}"
            )
    return None
