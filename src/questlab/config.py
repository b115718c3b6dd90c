"""Run configs: typed (pydantic), loaded from YAML, unknown keys rejected.

A config names the model family and its params; the params are validated against that family's
own ``Params`` class, so a typo such as ``apha: 3`` fails at load time with the accepted keys.
The *resolved* config (every default filled in) is what a run records.

``--set key.path=value`` overrides (``apply_overrides``) are applied to the raw mapping before
validation: each key is checked against the schema (``model.params.*`` against the family named by
``model.name`` at that point), each value is parsed as YAML, and the resolved config records them.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from questlab.errors import ConfigError
from questlab.models import get_model_class
from questlab.yamlfile import UniqueKeyLoader, read_yaml  # noqa: F401 (read_yaml: its 0.10.0 home)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class FoldsConfig(_Strict):
    """How rows are split: new grouped folds from a seed, or the exact folds of an earlier run."""

    n_splits: int = Field(5, ge=2, description="number of grouped folds")
    seed: int = Field(42, description="seed of the fold assignment")
    from_run: str | None = Field(None, description="reuse the folds recorded by this run id")
    from_file: Path | None = Field(None, description="reuse a folds.csv (the id, group, fold)")

    @model_validator(mode="after")
    def _one_source(self) -> FoldsConfig:
        if self.from_run and self.from_file:
            raise ValueError("give folds.from_run or folds.from_file, not both")
        return self


class ModelConfig(_Strict):
    """Which model family, and its params (validated against the family's Params class)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _resolve_params(self) -> ModelConfig:
        try:
            klass = get_model_class(self.name)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        try:
            resolved = klass.Params(**self.params)
        except ValidationError as exc:
            accepted = ", ".join(klass.Params.model_fields)
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            raise ValueError(f"model {self.name!r} params: {problems} (accepted keys: {accepted})") from None
        self.params = resolved.model_dump(mode="json")
        return self


class RunConfig(_Strict):
    """A whole CV run."""

    name: str = Field(description="a short label for the run")
    description: str = ""
    task: str | None = Field(None, description="the task: a built-in name (quest, ell) or a spec file (none: quest)")
    seed: int = Field(42, description="seed handed to the model (weights, shuffling)")
    folds: FoldsConfig = Field(default_factory=FoldsConfig)
    model: ModelConfig
    bootstrap: int = Field(200, ge=0, description="bootstrap resamples for the CV interval (0 = none)")
    parallel_folds: int = Field(1, ge=1, description="folds fitted at once in worker processes (1 = in-process)")
    log_model: bool = Field(True, description="record a finished run as an MLflow model (runs:/RUN_ID/model)")
    overrides: list[str] = Field(default_factory=list, description="the --set overrides applied, as given")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read and validate a YAML run config; every problem is a ``ConfigError`` naming the file.

    ``path`` is a YAML file or, where no such file exists, the name of a config shipped with
    questlab (``tfidf``, see :func:`shipped_config_names`): a path that exists always wins.
    ``overrides`` (``key.path=value`` strings) are applied to the file's mapping before validation.
    """
    text = str(path)
    if not Path(path).exists():
        if text in shipped_config_names():
            resource = resources.files("questlab.configs") / f"{text}.yaml"
            with resources.as_file(resource) as shipped:
                return parse_config(read_yaml(shipped), source=f"shipped config {text!r}", overrides=overrides)
        raise ConfigError(_no_config_message(Path(path)))
    return parse_config(read_yaml(path), source=text, overrides=overrides)


@cache
def shipped_config_names() -> tuple[str, ...]:
    """The run configs shipped in the package (``questlab/configs/*.yaml``), by name: ``tfidf``, ..."""
    folder = resources.files("questlab.configs")
    return tuple(sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")))


def _no_config_message(path: Path) -> str:
    """A missing config file: the shipped names, and the closest one to what was given."""
    names = shipped_config_names()
    close = difflib.get_close_matches(path.name.removesuffix(".yaml").removesuffix(".yml"), names, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{path}: no such config file{hint}; give a YAML file or a shipped config by name: {', '.join(names)}"


def to_overrides(values: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """``{"model.params.alpha": 3}`` or ``["model.params.alpha=3"]`` as ``key=value`` override strings."""
    if values is None:
        return []
    if isinstance(values, Mapping):
        # JSON is YAML: each value keeps its type when the override is parsed back
        return [f"{k}={json.dumps(v)}" for k, v in values.items()]
    if isinstance(values, str):
        raise TypeError("overrides: give a mapping or a list of 'key=value' strings, not one string")
    return [str(v) for v in values]


def resolve_config(
    config: str | Path | Mapping[str, Any] | RunConfig, overrides: Mapping[str, Any] | Sequence[str] | None = None
) -> RunConfig:
    """A RunConfig from a YAML path, a shipped config's name (``"tfidf"``), a mapping or a RunConfig,
    with ``overrides`` applied."""
    extra = to_overrides(overrides)
    if isinstance(config, RunConfig):
        return parse_config(config.model_dump(mode="json"), source=f"config {config.name!r}", overrides=extra)
    if isinstance(config, Mapping):
        return parse_config(dict(config), source="config dict", overrides=extra)
    return load_config(config, overrides=extra)


def parse_config(data: Any, source: str = "config", overrides: list[str] | None = None) -> RunConfig:
    """Validate an already-parsed config mapping, after applying ``overrides`` (if any).

    Applied overrides are appended to the config's ``overrides`` record; a record already in
    ``data`` (a resolved config read back) is kept as is and never re-applied.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    overrides = list(overrides or [])
    original = data
    if overrides:
        data = apply_overrides(data, overrides, source)
        prior = data.get("overrides")
        if prior is None:
            prior = []
        # a malformed prior record is left for validation to report
        data["overrides"] = [*prior, *overrides] if isinstance(prior, list) else prior
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"]]
            key = ".".join(loc) or "(top level)"
            msg = "unknown config key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            if overrides and loc[:1] != ["overrides"]:
                msg += _override_note(loc, overrides, original)
            problems.append(f"{key}: {msg}")
        raise ConfigError(f"{source}: {'; '.join(problems)}") from None


def apply_overrides(data: dict, overrides: list[str], source: str = "config") -> dict:
    """Return a deep copy of the raw config ``data`` with each ``key.path=value`` applied in order.

    Values are parsed as YAML (``3``, ``1e-3``, ``true``, ``null``, ``[1, 2]``, ``{a: 1}``, ``'quoted'``).
    Keys are checked against the schema at every level; ``model.params.*`` against the ``Params`` of
    the family that ``model.name`` names once the earlier overrides are applied. Missing
    intermediate mappings are created. Problems raise ``ConfigError`` naming ``source`` and the override.
    """
    if isinstance(overrides, str):
        raise TypeError("overrides must be a list of 'key.path=value' strings, not one string")
    result = copy.deepcopy(data)
    for text in overrides:
        path, value = _split_override(text, source)
        _set_path(result, path, value, text, source)
    return result


_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _split_override(text: str, source: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], parsed value)."""
    key, sep, raw = text.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise ConfigError(f"{source}: override {text!r}: expected the form key.path=value (e.g. folds.n_splits=10)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(
            f"{source}: override {text!r}: value is not valid YAML ({first}); quote it to pass a plain string"
        ) from None
    if isinstance(value, str) and _NUMBER.fullmatch(raw.strip()):
        value = float(raw.strip())  # YAML 1.1 reads 1e-3 and 3e5 as strings
    elif isinstance(value, dt.date):
        value = raw.strip()  # YAML dates: no config key takes one, keep the text
    return path, value


def _set_path(root: dict, path: list[str], value: Any, text: str, source: str) -> None:
    """Set ``root[path...] = value`` in place, checking each key against the schema."""
    schema: type[BaseModel] | None = RunConfig  # None: a free-form mapping, any key
    node = root
    for i, key in enumerate(path):
        here = path[:i]
        if schema is not None:
            accepted = [k for k in schema.model_fields if not (schema is RunConfig and k == "overrides")]
            if key not in accepted:
                raise ConfigError(_unknown_key_message(root, here, key, accepted, text, source))
        if i == len(path) - 1:
            node[key] = value
            return
        schema = _child_schema(schema, key, root, path[: i + 1], text, source)
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            where = ".".join(path[: i + 1])
            raise ConfigError(
                f"{source}: override {text!r}: {where} is a {type(child).__name__} in the config, not a mapping"
            )
        node = child


def _child_schema(
    schema: type[BaseModel] | None, key: str, root: dict, path: list[str], text: str, source: str
) -> type[BaseModel] | None:
    """The schema of the mapping under ``schema.key``: a pydantic model, or None for free-form keys."""
    if schema is None:
        return None
    if schema is ModelConfig and key == "params":
        return _family_params(root, text, source)
    annotation = schema.model_fields[key].annotation
    for candidate in (annotation, *get_args(annotation)):
        if candidate is dict or get_origin(candidate) is dict:
            return None
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    where = ".".join(path)
    raise ConfigError(f"{source}: override {text!r}: {where} takes a single value, not sub-keys")


def _family_params(root: dict, text: str, source: str) -> type[BaseModel]:
    """The ``Params`` class of the family that ``model.name`` currently names."""
    model = root.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    if not isinstance(name, str):
        raise ConfigError(f"{source}: override {text!r}: set model.name before model.params (it decides the keys)")
    try:
        return get_model_class(name).Params
    except KeyError as exc:
        raise ConfigError(f"{source}: override {text!r}: {exc.args[0]}") from None


def _unknown_key_message(root: dict, here: list[str], key: str, accepted: list[str], text: str, source: str) -> str:
    prefix = "".join(f"{p}." for p in here)
    level = ".".join(here) or "the top level"
    if here == ["model", "params"]:
        level += f" of model {root['model']['name']!r}"
    close = difflib.get_close_matches(key, accepted, n=3)
    hint = f" (did you mean {' or '.join(repr(prefix + c) for c in close)}?)" if close else ""
    listed = ", ".join(accepted) or "none"
    return f"{source}: override {text!r}: unknown key {prefix + key!r}{hint}; accepted keys at {level}: {listed}"


def _override_note(loc: list[str], overrides: list[str], original: dict) -> str:
    """Name the overrides behind a validation error at ``loc`` (those on the same key path)."""
    related = []
    for text in overrides:
        path = [p.strip() for p in text.partition("=")[0].split(".")]
        n = min(len(path), len(loc))
        if path[:n] == loc[:n]:
            related.append(text)
    if not related:
        return ""
    note = f" (from override{'s' if len(related) > 1 else ''} {', '.join(repr(t) for t in related)})"
    model = original.get("model")
    switched = any(t.partition("=")[0].replace(" ", "") == "model.name" for t in related)
    if switched and loc[:1] == ["model"] and isinstance(model, dict) and model.get("params"):
        note += "; the file's model.params belong to its own family: reset them with model.params={}"
    return note
