"""CLI commands for task specs: ``questlab task init DATA.csv``, ``task show NAME_OR_PATH``, ``task list``.

``init`` drafts a spec from a labelled CSV (columns' roles guessed from their values, printed as
YAML with comments on what to check); ``show`` prints a resolved spec; ``list`` the built-ins.
"""

import math
import re
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from questlab.cli.common import OneLineErrors, examples, guard

LONG_TEXT = 40  # mean characters above which a column is a text to rate
MIN_WORDS = 3  # median words a text column has at least
MAX_LEVELS = 21  # an ordinal target has at most this many levels on a regular grid (1.0..5.0 step 0.2)
MAX_FEATURE_VALUES = 20  # a short column with at most this many distinct values is a categorical feature
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = {"yes", "no", "true", "false", "null", "on", "off", "none", "y", "n", "~"}


def _name(text: str) -> str:
    """A column name as YAML: bare where that reads back as the same string, quoted otherwise."""
    return text if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS else '"' + text.replace('"', '\\"') + '"'


def _num(x: float) -> str:
    """A number as short as it reads back exactly (integers without a point)."""
    x = float(f"{x:.10g}")
    return str(int(x)) if x == int(x) else repr(x)


def _numeric(values: pd.Series) -> pd.Series | None:
    """The column as finite floats, or None where any cell is empty or not a number."""
    stripped = values.astype(str).str.strip()
    numbers = pd.to_numeric(stripped, errors="coerce")
    if (stripped == "").any() or numbers.isna().any() or not np.isfinite(numbers.to_numpy(dtype=float)).all():
        return None
    return numbers.astype(float)


def _id_column(frame: pd.DataFrame, source: str) -> str:
    """The first column whose values are unique, non-empty strings or integers (names ending in "id" first)."""
    candidates = []
    for col in frame.columns:
        values = frame[col].astype(str).str.strip()
        numbers = pd.to_numeric(values, errors="coerce")
        fractional = numbers.notna().all() and (numbers != numbers.round()).any()
        if (values != "").all() and values.is_unique and not fractional:
            candidates.append(col)
    if not candidates:
        from questlab.errors import DataError

        raise DataError(source, "no column holds a unique, non-empty value in every row", hint="add an id column")
    ends_in_id = [c for c in candidates if c.lower().endswith("id")]
    return (ends_in_id or candidates)[0]


def _target(name: str, values: pd.Series) -> dict:
    """One target: ordinal with its step where values sit on a regular grid of few levels, else continuous.

    Ranges are rounded outward: an ordinal one to whole numbers where its step divides 1 (1.5..4.5
    step 0.5 -> [1, 5]), a continuous one to its span's order of magnitude (0.3..9.7 -> [0, 10]).
    """
    lo, hi = float(values.min()), float(values.max())
    distinct = np.unique(values.round(9).to_numpy())
    if 2 <= len(distinct) <= MAX_LEVELS:
        step = float(np.diff(distinct).min())
        nice = abs(step - round(step, 4)) < 1e-9  # 0.5, 0.25, 1; not thirds (QUEST's rater shares)
        step = round(step, 4)
        on_grid = nice and np.abs((distinct - lo) / step - np.round((distinct - lo) / step)).max() < 1e-6
        if abs(1 / step - round(1 / step)) < 1e-9:  # the grid passes through the whole numbers
            lo, hi = float(math.floor(lo + 1e-9)), float(math.ceil(hi - 1e-9))
        if on_grid and round((hi - lo) / step) + 1 <= MAX_LEVELS:
            return {"name": name, "low": lo, "high": hi, "kind": "ordinal", "step": step}
        lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 1:  # shares and probabilities
        low, high = 0.0, 1.0
    else:
        unit = 10.0 ** math.floor(math.log10(hi - lo)) if hi > lo else 1.0
        low, high = math.floor(lo / unit) * unit, math.ceil(hi / unit) * unit
        high = high if high > low else low + unit
    return {"name": name, "low": low, "high": high, "kind": "continuous"}


def _target_lines(targets: list[dict]) -> list[str]:
    """The targets as YAML lines; ordinal targets of one step share the widest of their ranges
    (a slice of the data may miss a target's extreme levels)."""
    for step in {t["step"] for t in targets if t["kind"] == "ordinal"}:
        same = [t for t in targets if t.get("step") == step]
        low, high = min(t["low"] for t in same), max(t["high"] for t in same)
        if round((high - low) / step) + 1 <= MAX_LEVELS:
            for t in same:
                t["low"], t["high"] = low, high
    lines = []
    for t in targets:
        extra = f", step: {_num(t['step'])}" if t["kind"] == "ordinal" else ""
        lines.append(
            f"  - {{name: {_name(t['name'])}, range: [{_num(t['low'])}, {_num(t['high'])}], kind: {t['kind']}{extra}}}"
        )
    return lines


def draft_spec(frame: pd.DataFrame, name: str, source: str = "the file") -> str:
    """A draft task spec (YAML text, with comments) for a labelled frame of strings, as ``task init`` prints it.

    id: the first unique non-empty column (names ending in "id" first); targets: the numeric
    columns; texts: columns of long text (mean > 40 characters, 3+ words), all role ``first``; features:
    short columns with few distinct values, filled in every row; optional: the rest.
    """
    from questlab.errors import DataError

    if len(frame) == 0:
        raise DataError(source, "the file has a header but no rows", hint="task init reads a labelled train file")
    id_col = _id_column(frame, source)
    targets, texts, features, optional, repeated = [], [], [], [], []
    for col in frame.columns:
        if col == id_col:
            continue
        values = frame[col].astype(str)
        numbers = _numeric(values)
        if numbers is not None:
            targets.append(_target(col, numbers))
            continue
        words = values.str.split().str.len().median()  # a url or a page link is long but one word
        if values.str.len().mean() > LONG_TEXT and words >= MIN_WORDS:
            texts.append(col)
            continue
        n_distinct = values.nunique()
        if n_distinct < len(values):
            repeated.append(col)
        filled = (values.str.strip() != "").all()
        small = n_distinct <= MAX_FEATURE_VALUES and n_distinct < max(2, len(values) / 2)
        (features if filled and small else optional).append(col)
    if not targets:
        raise DataError(
            source, "no numeric column to rate", hint="task init reads a labelled train file: targets are numbers"
        )
    if not texts:
        raise DataError(source, f"no column of long text (mean over {LONG_TEXT} characters)", hint="a task rates texts")
    lines = [
        f"# draft task spec from {source} ({len(frame)} rows): check each line, then",
        f"#   questlab check {source} --task SPEC.yaml",
        f"name: {_name(name)}",
        'description: ""',
        f"id: {_name(id_col)}",
        "texts:",
        *(f"  - {{name: {_name(t)}, role: first}}" for t in texts),
    ]
    if len(texts) > 1:
        lines.append("  # a pair (a question and its answer)? give the second segment's texts role: second")
    lines.append(f"features: [{', '.join(map(_name, features))}]   # categorical columns models may use")
    lines.append(f"optional: [{', '.join(map(_name, optional))}]   # columns models ignore; may be missing or empty")
    if repeated:
        lines.append(
            f"groups: none   # values repeat in {', '.join(repeated)}: if rows sharing one must stay in one "
            "fold, write groups: {column: NAME}"
        )
    else:
        lines.append("groups: none")
    lines += ["targets:", *_target_lines(targets), f"metric: {'rmse' if len(targets) == 1 else 'mcrmse'}"]
    return "\n".join(lines) + "\n"


@guard
def init(
    path: Annotated[Path, typer.Argument(help="a labelled CSV: an id, text columns, numeric targets")],
    name: Annotated[str | None, typer.Option("--name", help="the task's name (default: the file's stem)")] = None,
) -> None:
    """Print a draft task spec (YAML) for a labelled CSV: check it, save it, pass it as --task."""
    from questlab.csvfile import read_csv

    frame = read_csv(path)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).name.split(".")[0]) or "task"
    typer.echo(draft_spec(frame, name or stem, str(path)), nl=False)


@guard
def show(task: Annotated[str, typer.Argument(help="a built-in task name or a task spec file")]) -> None:
    """Print a task spec as resolved (every target with its own range and levels) in YAML."""
    import yaml

    from questlab.tasks import load_task

    resolved = load_task(task)
    typer.echo(f"# task {resolved.name!r}, fingerprint {resolved.fingerprint}")
    typer.echo(
        yaml.safe_dump(resolved.to_data(), sort_keys=False, allow_unicode=True, width=120, default_flow_style=None),
        nl=False,
    )


@guard
def list_tasks() -> None:
    """The built-in tasks: name, targets, metric and what they rate."""
    from questlab.tasks import builtin_task_names, load_task

    for task_name in builtin_task_names():
        task = load_task(task_name)
        typer.echo(f"{task.name}\t{task.n_targets} targets\t{task.metric}\t{task.description}")


def register(app: typer.Typer) -> None:
    """Add the ``task`` group (init, show, list) to the questlab CLI."""
    task_app = typer.Typer(
        cls=OneLineErrors,
        no_args_is_help=True,
        help="Task specs: draft one from a CSV, show one, list the built-ins.",
        epilog=examples("questlab task init train.csv --name reviews", "questlab task show ell", "questlab task list"),
    )
    task_app.command("init", epilog=examples("questlab task init train.csv --name reviews"))(init)
    task_app.command("show", epilog=examples("questlab task show ell", "questlab task show reviews.yaml"))(show)
    task_app.command("list", epilog=examples("questlab task list"))(list_tasks)
    app.add_typer(task_app, name="task")
