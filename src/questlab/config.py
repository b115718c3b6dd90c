"""Run configs: typed (pydantic), loaded from YAML, unknown keys rejected.

A config names the model family and its params; the params are validated against that family's
own ``Params`` class, so a typo such as ``apha: 3`` fails at load time with the accepted keys.
The *resolved* config (every default filled in) is what a run records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from questlab.models import get_model_class


class ConfigError(ValueError):
    """A config file that cannot be used: which file, which key, what is accepted."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class FoldsConfig(_Strict):
    """How rows are split: new grouped folds from a seed, or the exact folds of an earlier run."""

    n_splits: int = Field(5, ge=2, description="number of grouped folds")
    seed: int = Field(42, description="seed of the fold assignment")
    from_run: str | None = Field(None, description="reuse the folds recorded by this run id")
    from_file: Path | None = Field(None, description="reuse a folds.csv (qa_id, group, fold)")

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
    seed: int = Field(42, description="seed handed to the model (weights, shuffling)")
    folds: FoldsConfig = Field(default_factory=FoldsConfig)
    model: ModelConfig
    bootstrap: int = Field(200, ge=0, description="bootstrap resamples for the CV interval (0 = none)")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run config; every problem is a ``ConfigError`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(data, source=str(path))


def parse_config(data: Any, source: str = "config") -> RunConfig:
    """Validate an already-parsed config mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown config key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg}")
        raise ConfigError(f"{source}: {'; '.join(problems)}") from None
