"""Tasks: the built-in specs (``quest``, ``ell``) and any spec file, read into a :class:`Task`."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from questlab.errors import ConfigError
from questlab.tasks.spec import Groups, Route, Target, Task, TextColumn
from questlab.yamlfile import read_yaml

DEFAULT_TASK = "quest"  # with no task given: every command written for 0.9.0 works as it did
TaskRef = str | Path | Task | None


@cache
def builtin_task_names() -> tuple[str, ...]:
    """The task specs shipped in the package, by name."""
    folder = resources.files("questlab.tasks")
    return tuple(sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")))


def load_task(ref: TaskRef = None) -> Task:
    """A task from a built-in name (``quest``, ``ell``), a YAML file, a mapping or a ``Task``.

    ``None`` is the default task (``quest``). A file that exists wins over a built-in name. Every
    problem is a one-line ``ConfigError`` naming the spec and the key.
    """
    if ref is None:
        ref = DEFAULT_TASK
    if isinstance(ref, Task):
        return ref
    if isinstance(ref, dict):
        return parse_task(ref, "task spec")
    text = str(ref)
    if text in builtin_task_names() and not Path(text).is_file():  # a folder called "ell" is not a spec
        return _builtin(text)
    if not Path(text).exists():
        names = ", ".join(builtin_task_names())
        raise ConfigError(f"{text}: no such task spec file; give a YAML file or a built-in task by name: {names}")
    return parse_task(read_yaml(text, what="task spec"), text)


@cache
def _builtin(name: str) -> Task:
    resource = resources.files("questlab.tasks") / f"{name}.yaml"
    return parse_task(yaml.safe_load(resource.read_text(encoding="utf-8")), f"built-in task {name!r}")


def parse_task(data: object, source: str) -> Task:
    """Validate a parsed spec; problems become one ``ConfigError`` line naming ``source`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level (name, id, texts, targets, metric)")
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg}")
        raise ConfigError(f"{source}: {'; '.join(problems)}") from None


__all__ = [
    "DEFAULT_TASK",
    "Groups",
    "Route",
    "Target",
    "Task",
    "TaskRef",
    "TextColumn",
    "builtin_task_names",
    "load_task",
    "parse_task",
]
