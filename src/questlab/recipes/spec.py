"""What a recipe is: members (run configs), how they are combined, and what follows; typed, from YAML.

A recipe file::

    name: fast
    members:                          # run configs: a path (relative to this file) or inline
      - config: {name: emb, folds: {n_splits: 5, seed: 42}, model: {name: embedding}}
      - config: tfidf.yaml
        set: {model.params.alpha: 3}  # --set overrides, typed and checked like the CLI's
        device: any                   # any | cpu | cuda: the member is used only on that device
        tasks: [quest]                # the member is used only for these tasks (absent: every task)
      - config: {name: emb-any, model: {name: embedding}}
        not_tasks: [quest]            # ... or for every task but these
    ensemble: {method: weights, weights: auto, per_target: true, average: rank}
    question_share: true              # share question_* predictions over a question's answers
    postprocess: distribution         # none | auto | distribution | thresholds | snap | shrink
    bootstrap: 200
    per_task:                         # settings that differ for a task (the others are the recipe's)
      "*": {ensemble: {average: value}, question_share: false, postprocess: auto}   # any task not named

Every member runs on the first member's folds (``folds: {from_run: FIRST}`` is forced onto the
others), so their OOF predictions can be combined. Built-in recipes (``fast``, ``best``) are YAML
files inside this package, found by name. :meth:`RecipeSpec.for_task` is the recipe for one task:
its members for that task, its settings with the task's ``per_task`` entry laid over them.
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
from questlab.tasks import DEFAULT_TASK, load_task

Device = Literal["any", "cpu", "cuda"]
# Config keys that do not change what a member fits or records as its score (its run's key leaves them out).
NOT_FITTED = ("name", "description", "parallel_folds", "log_model", "overrides", "folds")


def fitted_part(config: RunConfig) -> dict[str, Any]:
    """What a member's run fits: its resolved config without ``NOT_FITTED`` (every member shares the
    first member's folds, so two members with equal parts would be one run given twice). The
    default task (left out, or named) is not part of it: such members keep the keys they had
    before tasks."""
    return {
        k: v
        for k, v in config.model_dump(mode="json").items()
        if k not in NOT_FITTED and not (k == "task" and v in (None, DEFAULT_TASK))
    }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class MemberSpec(_Strict):
    """One member: a run config (a YAML path, relative to the recipe, or an inline mapping)."""

    config: str | dict[str, Any] = Field(description="a run config: YAML path or inline mapping")
    set: dict[str, Any] = Field(default_factory=dict, description="config overrides: {key.path: value}")
    device: Device = Field("any", description="use this member only on this device (cuda: a GPU is present)")
    tasks: list[str] | None = Field(None, description="use this member only for these tasks (names); none: every task")
    not_tasks: list[str] = Field(default_factory=list, description="never use this member for these tasks (names)")

    def applies_to(self, task: str) -> bool:
        """Whether this member is meant for the task named ``task``."""
        return (self.tasks is None or task in self.tasks) and task not in self.not_tasks


class EnsembleOptions(_Strict):
    """How the members' predictions become one (see ``questlab ensemble``)."""

    method: Literal["weights", "stack", "stack+related"] = "weights"
    weights: Literal["auto", "equal"] = "auto"
    per_target: bool = True
    average: Literal["value", "rank"] = "rank"


PostProcess = Literal["none", "auto", "distribution", "thresholds", "snap", "shrink"]


class TaskSettings(_Strict):
    """A recipe's settings for one task, laid over the recipe's own (what is left out stays)."""

    ensemble: EnsembleOptions | None = None
    question_share: bool | None = None
    postprocess: PostProcess | None = None


class RecipeSpec(_Strict):
    """A whole recipe: members on shared folds, ensembling, question share, post-processing."""

    name: str
    description: str = ""
    members: list[MemberSpec] = Field(min_length=1)
    ensemble: EnsembleOptions = Field(default_factory=EnsembleOptions)
    question_share: bool = False
    postprocess: PostProcess = "distribution"
    bootstrap: int = Field(200, ge=0, description="group resamples (QUEST: questions) for the intervals")
    per_task: dict[str, TaskSettings] = Field(
        default_factory=dict, description='settings per task name ("*": every task not named)'
    )
    source: str = Field("recipe", exclude=True, description="where it was read from (for messages)")
    base: Path | None = Field(None, exclude=True, description="the folder member paths are relative to")

    def for_task(self, task: str) -> RecipeSpec:
        """This recipe for the task named ``task``: the members meant for it, its ``per_task``
        settings applied; a recipe with no member for it is one ``ConfigError`` line."""
        members = [m for m in self.members if m.applies_to(task)]
        if not members:
            raise ConfigError(f"{self.source}: members: no member is meant for task {task!r} (see tasks/not_tasks)")
        update: dict[str, Any] = {"members": members, "per_task": {}}
        own = self.per_task.get(task, self.per_task.get("*"))
        if own is not None:
            update |= {k: v for k, v in own.model_dump(exclude_none=True).items() if k != "ensemble"}
            if own.ensemble is not None:
                update["ensemble"] = self.ensemble.model_copy(update=own.ensemble.model_dump(exclude_unset=True))
        out = self.model_copy(update=update)
        out.source, out.base = self.source, self.base
        return out

    def member_configs(self, cuda: bool | None = None, task: str | None = None) -> list[RunConfig]:
        """The resolved run configs of the members used on this device (``cuda`` None: detect it).

        Two members that resolve to the same fitted config (:func:`fitted_part`) are refused here,
        before any fit: the second would only find the first's run again. ``task`` (a built-in name
        or a spec path) is set on members whose config names none (None: left as they are, QUEST);
        only the members meant for it are used (:meth:`for_task` does the same, with the settings).
        """
        task_name = DEFAULT_TASK if task is None else load_task(task).name
        if cuda is None and any(m.device != "any" for m in self.members):
            cuda = cuda_available()
        out: list[RunConfig] = []
        seen: dict[str, int] = {}  # fitted part (as JSON) -> index of the member that has it
        for i, m in enumerate(self.members):
            if not m.applies_to(task_name) or (m.device != "any" and (m.device == "cuda") != cuda):
                continue
            where = f"{self.source}, members.{i}.config"
            overrides = to_overrides(m.set)
            if isinstance(m.config, dict):
                config = parse_config(dict(m.config), source=where, overrides=overrides)
            else:
                path = Path(m.config) if self.base is None else self.base / m.config
                config = load_config(path, overrides=overrides)
            if task is not None and getattr(config, "task", None) is None:
                config = _with_task(config, task, where)
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


def _with_task(config: RunConfig, task: str, where: str) -> RunConfig:
    if "task" not in type(config).model_fields:
        raise ConfigError(f"{where}: this questlab's run config has no task key (the run stage's tasks are missing)")
    return config.model_copy(update={"task": task})


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
