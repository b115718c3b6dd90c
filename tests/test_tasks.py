"""Task specs: the built-ins load, and every bad spec is one ConfigError naming the spec file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers.synthetic_task import SPEC, write_spec
from questlab import schema
from questlab.cli import app
from questlab.errors import ConfigError
from questlab.tasks import builtin_task_names, load_task


def test_builtins_load_and_quest_matches_the_schema() -> None:
    assert set(builtin_task_names()) >= {"quest", "ell"}
    quest = load_task(None)
    assert quest is load_task("quest") and quest.name == "quest"
    assert quest.target_names == schema.TARGETS and quest.id == schema.ID
    assert set(quest.test_columns) == set(schema.TEST_COLUMNS)
    ell = load_task("ell")
    assert ell.id == "text_id" and ell.text_names == ("full_text",) and ell.groups is None
    assert ell.target_names == ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions")
    for target in ell.targets:
        assert target.kind == "ordinal" and (target.low, target.high) == (1, 5)
        assert target.levels == tuple(1 + 0.5 * i for i in range(9))
    assert ell.metric == "mcrmse" and not ell.scorer.higher_is_better


def test_messages_name_groups_where_the_task_groups_rows_and_rows_where_it_does_not() -> None:
    from questlab.tasks.grouping import group_noun

    assert group_noun(load_task("quest")) == "groups" and group_noun(load_task("ell")) == "rows"


def test_a_spec_file_loads(tmp_path: Path) -> None:
    task = load_task(write_spec(tmp_path))
    assert task.name == "reviews" and task.is_pair and task.group_columns == ("product",)
    assert task.targets[2].levels == (1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5)
    assert load_task(task.to_data()).fingerprint == task.fingerprint


def _mutated(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(SPEC)
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _drop_step(d: dict) -> None:
    d["targets"][1].pop("step")
    d["targets"][1]["levels"] = [1, 2, 9]


BAD = {
    "unknown metric": (lambda d: d.update(metric="auc"), "metric: unknown metric 'auc'"),
    "unknown role": (lambda d: d["texts"][0].update(role="third"), "texts.0.role: "),
    "column named twice": (lambda d: d.update(optional=["author", "shop"]), "column 'shop' is named twice"),
    "level outside range": (_drop_step, "targets.1: target 'polite': level 9 lies outside its range [1, 5]"),
    "step not dividing": (lambda d: d["targets"][2].update(step=0.3), "targets: target 'clear': step 0.3 does not"),
    "rmse with 2+ targets": (lambda d: d.update(metric="rmse"), "metric rmse scores one target, this task has 3"),
    "route matching nothing": (
        lambda d: d.update(routes=[{"targets": "zzz*", "reads": "first"}]),
        "routes: 'zzz*' matches no target",
    ),
    "unknown key": (lambda d: d.update(colour="red"), "colour: unknown key"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_spec_is_one_line_naming_file_and_key(case: str, tmp_path: Path) -> None:
    mutate, words = BAD[case]
    path = _mutated(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_task(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and words in text and "\n" not in text


def test_cli_task_show_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["task", "show", "ell"])
    assert shown.exit_code == 0, shown.output
    data = yaml.safe_load(shown.output)
    assert load_task(data).fingerprint == load_task("ell").fingerprint
    listed = runner.invoke(app, ["task", "list"])
    assert listed.exit_code == 0 and [ln.split("\t")[0] for ln in listed.output.splitlines()] == list(
        builtin_task_names()
    )
    bad = runner.invoke(app, ["task", "show", str(_mutated(tmp_path, lambda d: d.update(metric="auc")))])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1 and "metric" in bad.output


def test_a_folder_named_like_a_builtin_task_does_not_hide_it(tmp_path, monkeypatch):
    from questlab.tasks import load_task

    (tmp_path / "ell").mkdir()  # e.g. a store or data folder called ell in the working folder
    monkeypatch.chdir(tmp_path)
    assert load_task("ell").name == "ell"
    (tmp_path / "quest").write_text(
        "name: mine\nid: i\ntexts: [{name: t}]\ntargets: [{name: y, low: 0, high: 1}]\nmetric: rmse\n"
    )
    assert load_task("quest").name == "mine"  # a file that exists wins
