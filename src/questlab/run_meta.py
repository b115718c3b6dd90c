"""``run.json``: what a run is and what it was made from (the schema, its version, old formats)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from questlab import __version__
from questlab.errors import RunFormatError, UsageError
from questlab.tasks import DEFAULT_TASK

FORMAT_VERSION = 3  # 1: questlab 0.2.0 (absolute data paths, no version field); 2: <= 0.9.0 (pickled TF-IDF folds)


class RunMeta(BaseModel):
    """``run.json``: what a run is and what it was made from."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = FORMAT_VERSION
    run_id: str
    kind: Literal["cv", "ensemble"] = "cv"
    task: str = DEFAULT_TASK  # the task's name (its spec is task.json); runs before tasks: QUEST
    name: str = ""
    model: str = ""
    config: dict[str, Any] | None = None  # the resolved RunConfig (CV runs)
    seed: int | None = None
    train_file: str | None = None  # the file's name only: provenance, never a path to follow
    train_sha256: str | None = None
    test_file: str | None = None
    test_sha256: str | None = None
    git_commit: str = "unknown"
    questlab_version: str = __version__
    folds_all: list[int] = Field(default_factory=list)
    folds_selected: list[int] = Field(default_factory=list)
    started_at: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    timings: dict[str, float] = Field(default_factory=dict)
    members: list[str] = Field(default_factory=list)  # ensembles: member run ids, in order
    # sha256 of the run-level files (CHECKED_FILES), written when the run is scored; a later read
    # of a changed file is refused. Runs of questlab <= 0.9.0 have none (nothing to check).
    checksums: dict[str, str] = Field(default_factory=dict)
    collected_from: list[str] = Field(default_factory=list)  # collect: the single-fold runs

    def check_same_data(self, part: Literal["train", "test"], data: Any) -> None:
        """Refuse train/test data (a ``questlab.data.Dataset`` or None) other than the run's, by sha256."""
        want, name = getattr(self, f"{part}_sha256"), getattr(self, f"{part}_file")
        if data is None:
            if want is not None:
                raise UsageError(
                    f"run {self.run_id} was made with {part} data {name} (sha256 {want[:12]}...): give it again"
                )
            return
        if want is not None and data.sha256 != want:
            raise UsageError(
                f"the {part} data given ({data.name}) is not what run {self.run_id} was made with "
                f"({name}, sha256 {want[:12]}...)"
            )


def _upgrade_meta(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a format-1 run.json (questlab 0.2.0) to the current schema."""
    data = dict(data)
    for part in ("train", "test"):
        path = data.pop(f"{part}_path", None)
        if path and not data.get(f"{part}_file"):
            data[f"{part}_file"] = Path(path).name
    data["format_version"] = FORMAT_VERSION
    return data


def parse_meta(data: dict[str, Any], where: str) -> RunMeta:
    """Validate a run.json mapping (any known format); ``where`` names it in errors."""
    version = int(data.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise RunFormatError(
            f"{where} is run format {version}, written by questlab {data.get('questlab_version', '?')}; "
            f"this questlab ({__version__}) reads formats up to {FORMAT_VERSION}: upgrade questlab"
        )
    if version < FORMAT_VERSION:
        data = _upgrade_meta(data)
    try:
        return RunMeta.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"])
        raise RunFormatError(f"{where}: {key}: {err['msg']}; re-run it with this questlab") from None
