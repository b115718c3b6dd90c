"""What a recipe is: members (run configs), how they are combined, and what follows; typed, from YAML.

A recipe file::

    name: fast
    members:                          # run configs: a path (relative to this file) or inline
      - config: {name: emb, folds: {n_splits: 5, seed: 42}, model: {name: embedding}}
      - config: tfidf.yaml
        set: {model.params.alpha: 3}  # --set overrides, typed and checked like the CLI's
        device: any                   # any | cpu | cuda: the member is used only on that device
    ensemble: {method: weights, weights: auto, per_target: true, average: rank}
    question_share: true              # share question_* predictions over a question's answers
    postprocess: distribution         # none | auto | distribution | thresholds
    bootstrap: 200

Every member runs on the first member's folds (``folds: {from_run: FIRST}`` is forced onto the
others), so their OOF predictions can be combined. Built-in recipes (``fast``, ``best``) are YAML
files inside this package, found by name.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from questlab.config import RunConfig, load_config, parse_config, read_yaml, to_overrides
from questlab.errors import ConfigError

Device = Literal["any", "cpu", "cuda"]
# Config keys that do not change what a member fits or records as its score (its run's key leaves them out).
NOT_FITTED = ("name", "description", "parallel_folds", "log_model", "overrides", "folds")


def fitted_part(config: RunConfig) -> dict[str, Any]:
    """What a member's run fits: its resolved config without ``NOT_FITTED`` (every member shares the
    first member's folds, so two members with equal parts would be one run given twice)."""
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in NOT_FITTED}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class MemberSpec(_Strict):
    """One member: a run config (a YAML path, relative to the recipe, or an inline mapping)."""

    config: str | dict[str, Any] = Field(description="a run config: YAML path or inline mapping")
    set: dict[str, Any] = Field(default_factory=dict, description="config overrides: {key.path: value}")
    device: Device = Field("any", description="use this member only on this device (cuda: a GPU is present)")


class EnsembleOptions(_Strict):
    """How the members' predictions become one (see ``questlab ensemble``)."""

    method: Literal["weights", "stack", "stack+related"] = "weights"
    weights: Literal["auto", "equal"] = "auto"
    per_target: bool = True
    average: Literal["value", "rank"] = "rank"


class RecipeSpec(_Strict):
    """A whole recipe: members on shared folds, ensembling, question share, post-processing."""

    name: str
    description: str = ""
    members: list[MemberSpec] = Field(min_length=1)
    ensemble: EnsembleOptions = Field(default_factory=EnsembleOptions)
    question_share: bool = False
    postprocess: Literal["none", "auto", "distribution", "thresholds"] = "distribution"
    bootstrap: int = Field(200, ge=0, description="question resamples for the intervals")
    source: str = Field("recipe", exclude=True, description="where it was read from (for messages)")
    base: Path | None = Field(None, exclude=True, description="the folder member paths are relative to")

    def member_configs(self, cuda: bool | None = None) -> list[RunConfig]:
        """The resolved run configs of the members used on this device (``cuda`` None: detect it).

        Two members that resolve to the same fitted config (:func:`fitted_part`) are refused here,
        before any fit: the second would only find the first's run again.
        """
        if cuda is None and any(m.device != "any" for m in self.members):
            cuda = cuda_available()
        out: list[RunConfig] = []
        seen: dict[str, int] = {}  # fitted part (as JSON) -> index of the member that has it
        for i, m in enumerate(self.members):
            if m.device != "any" and (m.device == "cuda") != cuda:
                continue
            where = f"{self.source}, members.{i}.config"
            overrides = to_overrides(m.set)
            if isinstance(m.config, dict):
                config = parse_config(dict(m.config), source=where, overrides=overrides)
            else:
                path = Path(m.config) if self.base is None else self.base / m.config
                config = load_config(path, overrides=overrides)
            fitted = json.dumps(fitted_part(config), sort_keys=True)
            if fitted in seen:
                raise ConfigError(
                    f"{self.source}: members.{seen[fitted]} and members.{i} resolve to the same config "
                    "(only names, descriptions or folds differ): "
                    "one run would be given twice to the ensemble; remove one or change what it fits"
                )
            seen[fitted] = i
            out.append(config)
        if not out:
            raise ConfigError(f"{self.source}: no member is meant for this device ({'cuda' if cuda else 'cpu'})")
        return out


def cuda_available() -> bool:
    """Whether torch sees a GPU (imported only when a recipe has device-specific members)."""
    import torch

    return bool(torch.cuda.is_available())


@cache
def builtin_names() -> tuple[str, ...]:
    """The recipes shipped in this package (``fast``, ``best``, ...)."""
    return tuple(sorted(p.name.removesuffix(".yaml") for p in resources.files(__package__).iterdir()
                        if p.name.endswith(".yaml")))  # fmt: skip


def load_recipe(name_or_path: str | Path) -> RecipeSpec:
    """A built-in recipe by name, or a recipe YAML file; any problem is one ``ConfigError`` line."""
    text = str(name_or_path)
    if text in builtin_names():
        resource = resources.files(__package__) / f"{text}.yaml"
        with resources.as_file(resource) as path:
            return parse_recipe(read_yaml(path, "recipe"), source=f"built-in recipe {text!r}", base=None)
    path = Path(name_or_path)
    if not path.exists() and path.suffix not in (".yaml", ".yml"):
        raise ConfigError(
            f"no recipe {text!r}: give a recipe YAML file or a built-in name ({', '.join(builtin_names())})"
        )
    return parse_recipe(read_yaml(path, "recipe"), source=str(path), base=path.parent)


def parse_recipe(data: Any, source: str = "recipe", base: Path | None = None) -> RecipeSpec:
    """Validate a parsed recipe mapping; a problem names ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    bad = {"source", "base"} & set(data)
    if bad:
        raise ConfigError(f"{source}: {sorted(bad)[0]}: unknown recipe key")
    try:
        spec = RecipeSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown recipe key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg}")
        raise ConfigError(f"{source}: {'; '.join(problems)}") from None
    spec.source, spec.base = source, base
    return spec
