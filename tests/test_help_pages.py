"""The help pages (issue 31): every command shows examples that parse, flags as flags, required inputs as such.

Each command's ``--help`` is rendered as a user sees it; each line under ``Examples:`` that starts
with ``questlab `` is parsed against the CLI with click's ``make_context`` (types, unknown options,
missing required ones), without running the command.
"""

from __future__ import annotations

import inspect
import shlex
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from questlab.cli import app
from questlab.config import load_config, shipped_config_names
from questlab.recipes.spec import builtin_names

REPO = Path(__file__).resolve().parents[1]


# typer vendors its own click (typer._click) in recent versions: groups, options and usage errors
# are recognised by what they have, not by click's classes.


def _is_group(command) -> bool:
    return hasattr(command, "list_commands")


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the CLI, the root included: ``()``, ``("run",)``, ``("finding", "add")``."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...], parent: typer.Context | None) -> None:
        paths.append(path)
        if _is_group(command):
            ctx = typer.Context(command, info_name=path[-1] if path else "questlab", parent=parent)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), (*path, name), ctx)

    walk(root, (), None)
    return paths


PATHS = _command_paths()
IDS = [" ".join(p) or "questlab" for p in PATHS]


@pytest.fixture(autouse=True)
def _wide_help(monkeypatch) -> None:
    """rich sizes the help to $COLUMNS: wide enough that no example line is wrapped."""
    monkeypatch.setenv("COLUMNS", "200")


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200, prog_name="questlab")
    assert result.exit_code == 0, result.output
    return result.stdout


def _examples(help_text: str) -> list[str]:
    """The lines under ``Examples:`` that are questlab invocations."""
    lines = [ln.strip() for ln in help_text.splitlines()]
    if "Examples:" not in lines:
        return []
    after = lines[lines.index("Examples:") + 1 :]
    return [ln for ln in after if ln.startswith("questlab ")]


def _parse(argv: list[str]) -> tuple[list[str], typer.Context]:
    """Parse ``argv`` as the CLI would, down to the command, without invoking anything: the names of
    the command (and groups) it resolves to, and the command's context (its parsed params)."""
    command = typer.main.get_command(app)
    ctx = command.make_context("questlab", list(argv), resilient_parsing=False)
    names: list[str] = []
    while _is_group(command):
        protected = getattr(ctx, "_protected_args", None)  # click < 8.2: ctx.protected_args
        args = [*(ctx.protected_args if protected is None else protected), *ctx.args]
        assert args, f"{argv}: no command"
        name, command, rest = command.resolve_command(ctx, args)
        names.append(name)
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return names, ctx


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_every_help_has_examples_that_parse(path: tuple[str, ...]) -> None:
    examples = _examples(_help(path))
    assert examples, f"`questlab {' '.join(path)} --help` shows no example"
    resolved = []
    for line in examples:
        assert len(line) <= 100, f"{line!r}: too long for one line of a terminal"
        argv = shlex.split(line)[1:]
        try:
            names, ctx = _parse(argv)
        except Exception as exc:
            if "UsageError" not in {k.__name__ for k in type(exc).__mro__}:
                raise
            pytest.fail(f"example {line!r} does not parse: {exc.format_message()}")
        resolved.append(tuple(names))
        _check_names_are_real(line, names, ctx)
    # at least one example runs the command itself (a group's may run one of its commands)
    assert any(r[: len(path)] == path for r in resolved), (path, examples)


def _check_names_are_real(line: str, names: list[str], ctx: typer.Context) -> None:
    """Config and recipe names in an example are shipped ones, with valid --set keys; a --space exists."""
    params = ctx.params
    if names in (["run"], ["tune"]) and params.get("config") is not None:
        config = str(params["config"])
        assert config in shipped_config_names(), f"{line!r}: {config} is not a shipped config"
        load_config(config, overrides=params.get("set_"))  # the --set keys exist
    if names == ["tune"] and params.get("space") is not None:
        assert (REPO / params["space"]).is_file(), f"{line!r}: no {params['space']} in the repository"
    if names == ["recipe"] and not params["name"].isupper():
        assert params["name"] in builtin_names(), f"{line!r}: {params['name']} is not a built-in recipe"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_no_help_shows_a_value_type_after_a_flag(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert "<bool>" not in text and "BOOLEAN" not in text, text


def _command(path: tuple[str, ...]):
    command = typer.main.get_command(app)
    for name in path:
        command = command.get_command(typer.Context(command), name)
    return command


def _bool_params(command) -> set[str]:
    """The names of a command's parameters annotated ``bool`` (in the function typer reads)."""
    if command.callback is None:
        return set()
    hints = typing.get_type_hints(inspect.unwrap(command.callback))
    return {name for name, hint in hints.items() if hint is bool}


def test_boolean_options_are_flags_that_take_no_value() -> None:
    flags = [
        (path, param)
        for path in PATHS
        for command in [_command(path)]
        for param in command.params
        if param.name in _bool_params(command)
    ]
    names = {(path, param.opts[0]) for path, param in flags}
    assert {(("runs",), "--json"), (("diagnose",), "--report"), (("tune",), "--join"), ((), "--version")} <= names
    for path, param in flags:
        assert param.is_flag, f"questlab {' '.join(path)} {param.opts[0]} takes a value"
    result = CliRunner().invoke(app, ["runs", "--json", "true"])
    assert result.exit_code == 2 and "unexpected extra argument" in result.stderr, result.output


def _rows(help_text: str) -> dict[str, str]:
    """The help's option and argument rows by their first word (``--train``, ``config``), whitespace joined."""
    rows: dict[str, str] = {}
    key = None
    for line in help_text.splitlines():
        cells = line.strip().strip("│").strip()
        words = cells.split()
        if words and words[0] == "*":
            words = words[1:]
        if words and (words[0].startswith("--") or words[0].islower() or words[0].isupper()) and "  " in cells:
            key = words[0]
            rows[key] = " ".join(words)
        elif key is not None and words and line.startswith("│"):
            rows[key] += " " + " ".join(words)
        if line.startswith("╰"):
            key = None
    return rows


@pytest.mark.parametrize(
    ("command", "required", "conditional"),
    [
        ("run", ["--train"], {"config": "required unless --resume"}),
        ("predict", ["--input", "--output"], {"run_id": "required unless --model"}),
        ("tune", ["--train"], {"config": "required unless --join", "--space": "required unless --join"}),
        ("evaluate", ["--input", "RUN|BUNDLE"], {}),
        ("pseudo-label", ["--unlabelled", "--output", "teacher"], {}),
    ],
)
def test_required_inputs_are_marked(command: str, required: list[str], conditional: dict[str, str]) -> None:
    rows = _rows(_help((command,)))
    for name in required:
        assert name in rows and "[required]" in rows[name], (name, rows)
    for name, says in conditional.items():
        assert name in rows and says in rows[name] and "[required]" not in rows[name], (name, rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "tfidf"], "Missing option '--train'"),
        (["run", "--train", "train.csv"], "give a CONFIG and --train (or --resume RUN_ID with the run's --train)"),
        (["predict", "RUN_ID", "--output", "x.csv"], "Missing option '--input'"),
        (["predict", "--input", "test.csv", "--output", "x.csv"], "give a RUN_ID or --model BUNDLE_DIR"),
        (["tune", "tfidf", "--space", "space.yaml"], "Missing option '--train'"),
        (["tune", "--train", "train.csv"], "give a CONFIG and --space"),
    ],
)
def test_a_missing_input_is_one_line(tmp_path: Path, monkeypatch, argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [*argv, "--store", str(tmp_path / "store")])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "store").exists()
